"""`medsight compare` and `medsight pretrain` end to end on a small real ISIC sample (tiny sizes, 2 folds)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import write_isic_sample
from medsight import api
from medsight.cli import main


@pytest.fixture()
def isic_small(shared_data, tmp_path) -> Path:
    src = write_isic_sample(shared_data, tmp_path / "isic")
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="folder-json", n_folds=2, progress=False)
    return ds


def test_compare_four_strategies_same_folds(isic_small, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(isic_small), "-o", str(out), "--side", "32", "--epochs", "1",
                 "--budget-minutes", "0.05", "--threads", "1"])
    assert code == 0
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["frozen", "finetune", "scratch", "selfsup", "ensemble"]
    for r in rows:
        assert 0 <= float(r["auc_ci95_low"]) <= float(r["auc"]) <= float(r["auc_ci95_high"]) <= 1
        assert float(r["seconds"]) > 0
    assert sum(r["recommended"] == "yes" for r in rows) == 1
    report = json.loads((out / "compare.json").read_text())
    assert report["num_cases"] == 16 and report["plan"]["side"] == 32
    # the sample's stripes (found by the import's check, counted here from the pixels) are named in the output
    from medsight.datasets.check import degenerate_image
    from medsight.datasets.manifest import Manifest
    from medsight.io import read_image

    blank = sum(degenerate_image(read_image(c.images[0]).array) is not None for c in Manifest.load(isic_small).cases)
    assert blank > 0 and report["cases_without_a_picture"] == blank
    printed = capsys.readouterr().out
    assert f"{blank} of 16 images hold no picture" in printed
    assert report["plan"]["frozen_side"] == 224  # the extractor sees its own resolution, not the budget's
    assert next((out / "parts").glob("*/frozen_side224_texture_fold0.json"))
    assert report["plan"]["color_constancy"] == "shades_of_gray"  # the default
    assert len(report["paired_tests"]) == 10 and all(0 <= t["p_value"] <= 1 for t in report["paired_tests"])
    assert report["strategies"]["frozen"]["classifiers_chosen"]
    assert report["strategies"]["ensemble"]["members"] == ["frozen", "finetune", "selfsup"]
    with open(out / "oof_predictions.csv", newline="") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 16 and len({r["case"] for r in oof}) == 16  # every case predicted once, out of fold
    probs = {}
    for s in ("frozen", "finetune", "scratch", "selfsup", "ensemble"):
        probs[s] = np.array([[float(r[f"{s}_prob_benign"]), float(r[f"{s}_prob_malignant"])] for r in oof])
        assert np.allclose(probs[s].sum(1), 1, atol=1e-5)
    mean = (probs["frozen"] + probs["finetune"] + probs["selfsup"]) / 3
    assert np.allclose(probs["ensemble"], mean, atol=2e-6)
    html = (out / "compare.html").read_text()
    assert "Recommendation" in html and "ROC curve" in html
    # (d) pretrained in each fold on that fold's 8 training images only
    for k in (0, 1):
        info = json.loads(next((out / "parts").glob(f"*/encoder_fold{k}.safetensors.json")).read_text())
        assert info["num_images"] == 8
    assert "recommendation:" in printed
    # a re-run reuses every finished (strategy, fold) part: same table, no training
    again = api_compare(isic_small, out)
    assert again["strategies"]["finetune"]["auc"] == report["strategies"]["finetune"]["auc"]


def api_compare(ds, out):
    from medsight.compare import compare

    return compare(ds, out, side=32, epochs=1, budget_minutes=0.05, quiet=True)


def test_pretrain_cli_writes_an_encoder_that_compare_uses(isic_small, shared_data, tmp_path):
    images = write_isic_sample(shared_data, tmp_path / "unlabelled", per_class=3)
    enc = tmp_path / "enc.safetensors"
    assert main(["pretrain", str(images), "-o", str(enc), "--epochs", "1", "--side", "32", "--threads", "1"]) == 0
    info = json.loads((tmp_path / "enc.safetensors.json").read_text())
    assert info["num_images"] == 6 and info["epochs"] == 1 and info["init"] == "imagenet"
    from medsight.compare import compare

    report = compare(isic_small, tmp_path / "cmp", strategies=["finetune", "selfsup"], encoder=enc, side=32,
                     epochs=1, folds=[0], quiet=True)
    assert report["encoder"] == str(enc) and report["num_cases"] == 8
    assert set(report["strategies"]) == {"finetune", "selfsup", "ensemble"}


def test_compare_refuses_bad_input(isic_small, tmp_path, capsys):
    assert main(["compare", str(isic_small), "--encoder", str(tmp_path / "none.safetensors")]) == 2
    assert "no such encoder file" in capsys.readouterr().err
    assert main(["compare", str(isic_small), "--label-fraction", "0"]) == 2
    assert main(["pretrain", str(tmp_path / "empty_dir_missing"), "-o", str(tmp_path / "e.safetensors")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_rerun_reuses_the_stored_plan_instead_of_timing_again(isic_small, tmp_path, monkeypatch):
    """An interrupted comparison resumes: the re-run takes the plan its first run wrote (timing this VM again
    could pick other epochs, whose parts would be kept apart from the finished ones); another budget plans anew."""
    import medsight.compare as cmp

    timed = []

    def slow(side):  # so slow that every side fits one epoch: the smallest side is taken
        timed.append(side)
        return 100.0

    monkeypatch.setattr(cmp, "measure_seconds_per_image", slow)
    out = tmp_path / "cmp"
    first = cmp.compare(isic_small, out, budget_minutes=0.05, strategies=["finetune"], folds=[0], quiet=True)
    assert timed == list(cmp.SIDES) and first["plan"]["side"] == cmp.SIDES[-1] and first["plan"]["epochs"] == 1
    stored = json.loads((out / cmp.PLAN_FILE).read_text())
    assert stored["request"]["budget_minutes"] == 0.05 and stored["plan"]["side"] == cmp.SIDES[-1]
    part = next((out / "parts").glob("*/finetune_fold0.json"))
    written = part.stat().st_mtime_ns

    monkeypatch.setattr(cmp, "measure_seconds_per_image", lambda side: pytest.fail("timed again"))
    again = cmp.compare(isic_small, out, budget_minutes=0.05, strategies=["finetune"], folds=[0], quiet=True)
    assert again["strategies"]["finetune"]["auc"] == first["strategies"]["finetune"]["auc"]
    assert part.stat().st_mtime_ns == written  # the finished part was read, not trained again

    timed.clear()
    monkeypatch.setattr(cmp, "measure_seconds_per_image", slow)
    cmp.compare(isic_small, out, budget_minutes=0.06, strategies=["finetune"], folds=[0], quiet=True)
    assert timed == list(cmp.SIDES)  # another request: planned again, and the stored plan replaced
    assert json.loads((out / cmp.PLAN_FILE).read_text())["request"]["budget_minutes"] == 0.06
    (out / cmp.PLAN_FILE).write_text("{not json")
    with pytest.raises(cmp.InputError, match="unreadable comparison plan"):
        cmp.compare(isic_small, out, budget_minutes=0.06, strategies=["finetune"], folds=[0], quiet=True)


def test_compare_fuses_clinical_covariates(shared_data, tmp_path):
    """Age and sex from the ISIC sidecars: each fold's covariate model, fitted on its training cases,
    multiplies into the images' probabilities; images alone stay in the table beside."""
    from medsight.classification.covariates import CovariateModel, fuse
    from medsight.compare import compare
    from medsight.datasets.manifest import Manifest

    src = write_isic_sample(shared_data, tmp_path / "isic", per_class=10)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="folder-json", n_folds=2, progress=False,
                       covariates="meta.clinical.age_approx,meta.clinical.sex")
    fused = compare(ds, tmp_path / "fused", strategies=["frozen"], side=32, epochs=1, budget_minutes=0.05, quiet=True)
    code = main(["compare", str(ds), "-o", str(tmp_path / "plain"), "--strategies", "frozen", "--side", "32",
                 "--epochs", "1", "--budget-minutes", "0.05", "--threads", "1", "--no-covariates"])
    assert code == 0
    plain = json.loads((tmp_path / "plain" / "compare.json").read_text())
    assert plain["covariates"] is None and "auc_images_only" not in plain["strategies"]["frozen"]
    assert fused["covariates"]["kinds"] == {"meta.clinical.age_approx": "numeric", "meta.clinical.sex": "categorical"}
    assert 0 <= fused["covariates"]["auc_alone"] <= 1
    assert fused["strategies"]["frozen"]["auc_images_only"] == pytest.approx(plain["strategies"]["frozen"]["auc"])

    def oof(folder):
        with open(folder / "oof_predictions.csv", newline="") as f:
            return {r["case"]: [float(r["frozen_prob_benign"]), float(r["frozen_prob_malignant"])]
                    for r in csv.DictReader(f)}

    images_only, with_covariates = oof(tmp_path / "plain"), oof(tmp_path / "fused")
    m = Manifest.load(ds)
    kinds, by_id = m.extra["covariates"], m.case_by_id
    for split in m.splits:  # the same fusion, by hand, from the training fold's covariates
        model = CovariateModel(kinds, 2).fit([by_id[i].covariates for i in split["train"]],
                                             [by_id[i].label for i in split["train"]])
        val = split["val"]
        expected = fuse(np.array([images_only[i] for i in val]),
                        model.predict_proba([by_id[i].covariates for i in val]), model.prior)
        assert np.allclose([with_covariates[i] for i in val], expected, atol=2e-6)
    assert not np.allclose(list(images_only.values()), list(with_covariates.values()), atol=1e-3)
    with open(tmp_path / "fused" / "compare.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["auc_images_only"]) == pytest.approx(plain["strategies"]["frozen"]["auc"], abs=1e-4)
    assert 0 <= float(row["p_value_covariates"]) <= 1 and row["p_value_covariates"] == \
        f"{fused['strategies']['frozen']['p_value_covariates']:.4f}"
    assert "Clinical covariates" in (tmp_path / "fused" / "compare.html").read_text()
