"""Clinical covariates through `train` and `predict`: a covariate model per fold beside the network, the
threshold chosen on fused validation probabilities, and the fusion at prediction, checked by hand on a
small real ISIC sample (age and sex from its sidecars)."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write_isic_sample
from medsight import api
from medsight.classification.covariates import CovariateModel, ensemble_fuse
from medsight.cli import main
from medsight.datasets.manifest import Manifest
from medsight.errors import InputError

AGE, SEX = "meta.clinical.age_approx", "meta.clinical.sex"


def _read(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _images_alone(run_dir: Path, fold: int, dataset: Path, cases: list[str]) -> np.ndarray:
    """The fold's network's own probabilities of ``cases`` (no covariates), as predict computes them."""
    info, p, task, models, _ = api.load_run(run_dir, torch.device("cpu"), [fold])
    by_id = Manifest.load(dataset).case_by_id
    entries = [{"case": c, "files": list(by_id[c].images), "extension": ".jpg"} for c in cases]
    arrays = [api._prepare_case(e, p, 3)[0] for e in entries]
    return np.array(task.predict_cases(models, arrays, p, torch.device("cpu")))


@pytest.fixture(scope="module")
def covariate_run(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("covariates")
    src = write_isic_sample(shared_data, root / "isic", per_class=10)
    code = main(["run", str(src), str(root / "out"), "--format", "folder-json", "--fold", "every", "--folds", "2",
                 "--epochs", "1", "--budget-minutes", "0.05", "--option", f"covariates={AGE},{SEX}"])
    assert code == 0
    return root / "out"


def test_each_fold_keeps_a_covariate_model_of_its_training_cases(covariate_run):
    run_dir, dataset = covariate_run / "run", covariate_run / "dataset"
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["covariates"] == {AGE: "numeric", SEX: "categorical"}
    m = Manifest.load(dataset)
    for k in range(2):
        train, val = m.fold_cases(k)
        decisions = json.loads((run_dir / f"fold_{k}" / "decisions.json").read_text())
        by_hand = CovariateModel(plan["covariates"], 2).fit([c.covariates for c in train], [c.label for c in train])
        kept = CovariateModel.from_state(decisions["covariate_model"])
        everyone = [c.covariates for c in m.cases]
        assert np.allclose(kept.predict_proba(everyone), by_hand.predict_proba(everyone), atol=1e-8)
        # the threshold is chosen on the validation cases' fused probabilities
        from medsight.evaluation.classification import choose_threshold

        fused = ensemble_fuse(_images_alone(run_dir, k, dataset, [c.id for c in val]), [c.covariates for c in val],
                              [decisions["covariate_model"]])
        y = np.array([c.label for c in val])
        assert decisions["threshold"] == pytest.approx(choose_threshold(y, fused[:, 1]), abs=1e-5)
        assert 0 <= decisions["validation_auc_images"] <= 1 and 0 <= decisions["validation_auc_with_covariates"] <= 1
    page = (run_dir / "report.html").read_text()
    assert f"{AGE} (numeric), {SEX} (categorical)" in page and "validation AUC, images" in page
    from medsight.classification.covariates import odds_ratios

    fold0 = odds_ratios(json.loads((run_dir / "fold_0" / "decisions.json").read_text())["covariate_model"])
    assert "<h3>Covariate models</h3>" in page and f"<td>{AGE}</td><td>{fold0[AGE]:.4f}</td>" in page


def test_cross_validation_predictions_are_fused_with_the_folds_covariates(covariate_run):
    run_dir, dataset = covariate_run / "run", covariate_run / "dataset"
    rows = _read(run_dir / "validation_predictions" / "predictions.csv")
    m = Manifest.load(dataset)
    for k in range(2):
        val = m.fold_cases(k)[1]
        state = json.loads((run_dir / f"fold_{k}" / "decisions.json").read_text())["covariate_model"]
        images = _images_alone(run_dir, k, dataset, [c.id for c in val])
        fused = ensemble_fuse(images, [c.covariates for c in val], [state])
        written = np.array([[float(rows[c.id]["prob_0"]), float(rows[c.id]["prob_1"])] for c in val])
        assert np.allclose(written, fused, atol=2e-6)
        assert not np.allclose(written, images, atol=1e-3)  # the covariates changed something


def test_predict_takes_covariates_from_a_csv(covariate_run, tmp_path, caplog):
    """Image files carry no covariates: without a CSV they count as missing (and a warning says so); a
    CSV's values are fused; the folds' models are averaged for the ensemble."""
    run_dir, dataset = covariate_run / "run", covariate_run / "dataset"
    m = Manifest.load(dataset)
    cases = m.cases[:4]
    files = [c.images[0] for c in cases]
    with caplog.at_level(logging.WARNING, logger="medsight.predict"):
        api.predict(run_dir, files, tmp_path / "bare", quiet=True)
    assert "4 of 4 case(s) have no value of the covariates" in caplog.text
    table = tmp_path / "covariates.csv"
    table.write_text("case," + AGE + "," + SEX + "\n" + "".join(
        f"{c.id},{70 if i % 2 else 25},{'male' if i % 2 else 'female'}\n" for i, c in enumerate(cases)))
    code = main(["predict", str(run_dir), *files, "-o", str(tmp_path / "given"), "--covariates", str(table)])
    assert code == 0
    bare, given = _read(tmp_path / "bare" / "predictions.csv"), _read(tmp_path / "given" / "predictions.csv")
    states = [json.loads((run_dir / f"fold_{k}" / "decisions.json").read_text())["covariate_model"] for k in range(2)]
    images = np.mean([_images_alone(run_dir, k, dataset, [c.id for c in cases]) for k in range(2)], 0)
    rows = [{AGE: 70.0 if i % 2 else 25.0, SEX: "male" if i % 2 else "female"} for i in range(4)]
    for expected, written, covariates in ((ensemble_fuse(images, [{}] * 4, states), bare, None),
                                          (ensemble_fuse(images, rows, states), given, rows)):
        got = np.array([[float(written[c.id]["prob_0"]), float(written[c.id]["prob_1"])] for c in cases])
        assert np.allclose(got, expected, atol=2e-6), covariates
    # --continue keeps what was written: with the same values it goes on, with other values it refuses
    api.predict(run_dir, files, tmp_path / "given", continue_=True, covariates=table, quiet=True)
    table.write_text(table.read_text().replace(f"{cases[1].id},70,", f"{cases[1].id},71,"))
    with pytest.raises(InputError, match=rf"case '{cases[1].id}' was predicted here with other covariate values "
                                         rf"\({AGE} 70.0 -> 71.0\)"):
        api.predict(run_dir, files, tmp_path / "given", continue_=True, covariates=table, quiet=True)
    assert _read(tmp_path / "given" / "predictions.csv") == given


def test_covariates_csv_is_refused_when_it_cannot_be_used(covariate_run, shared_data, tmp_path, capsys):
    run_dir = covariate_run / "run"
    image = Manifest.load(covariate_run / "dataset").cases[0].images[0]
    table = tmp_path / "ages.csv"
    table.write_text("case,age\nx,60\n")
    code = main(["predict", str(run_dir), image, "-o", str(tmp_path / "p"), "--covariates", str(table)])
    assert code != 0 and "ages.csv" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    elsewhere = tmp_path / "other.csv"  # every column, but for cases not given: a mix-up, not missing values
    elsewhere.write_text(f"case,{AGE},{SEX}\nsomeone_else,60,male\n")
    with pytest.raises(InputError, match="other.csv: names none of the 1 input case"):
        api.predict(run_dir, [image], tmp_path / "p", covariates=elsewhere, quiet=True)
    assert not (tmp_path / "p").exists()
    # a run without covariates refuses a covariates file
    plain = tmp_path / "plain"
    source = write_isic_sample(shared_data, tmp_path / "isic", per_class=4)
    api.import_dataset(source, plain, format="folder-json", progress=False)
    api.train(plain, fold=0, epochs=1, budget_minutes=0.05, quiet=True)
    assert "covariates" not in json.loads((plain / "run" / "plan.json").read_text())
    with pytest.raises(InputError, match="trained without clinical covariates"):
        api.predict(plain / "run", [image], tmp_path / "q", covariates=table, quiet=True)
    assert not (tmp_path / "q").exists()
    # importing the same images again with covariates replans (the cases' signatures did not change)
    api.import_dataset(source, plain, format="folder-json", progress=False, covariates=AGE)
    assert api.ensure_plan(plain, quiet=True)["covariates"] == {AGE: "numeric"}


def test_export_keeps_the_folds_covariate_model_beside_the_network(covariate_run, tmp_path):
    run_dir = covariate_run / "run"
    api.export(run_dir, tmp_path / "model.onnx", fold=1, quiet=True)
    sidecar = json.loads((tmp_path / "model.plan.json").read_text())
    decisions = json.loads((run_dir / "fold_1" / "decisions.json").read_text())
    assert sidecar["covariates"] == {AGE: "numeric", SEX: "categorical"}
    assert sidecar["decisions"]["covariate_model"] == decisions["covariate_model"]
    assert sidecar["decisions"]["threshold"] == decisions["threshold"]
