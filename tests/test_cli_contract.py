"""DESIGN.md's command-line contract, rule by rule, on real (small) data through the real CLI."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight import api
from medsight.api import case_name
from medsight.cli import main

CLI = [sys.executable, "-m", "medsight"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


# -- case names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, strip, expected", [
    ("scan_0003.png", False, ("scan_0003", ".png")),
    ("scan_0003.nii.gz", False, ("scan_0003", ".nii.gz")),
    ("drive_21_0000.png", True, ("drive_21", ".png")),
    ("drive_21_0000.png", False, ("drive_21_0000", ".png")),
    ("case.1_0001.nii.gz", True, ("case.1", ".nii.gz")),
    ("brain.mha", True, ("brain", ".mha")),
    ("slice_07.dicom", False, ("slice_07", ".dicom")),  # every extension the readers know
    ("prostate.mhd", False, ("prostate", ".mhd")),
])
def test_case_name_rule(name, strip, expected):
    assert case_name(name, strip) == expected


# -- stages run themselves, the budget becomes a number -----------------------------------------
def test_train_plans_and_preprocesses_a_fresh_dataset(tmp_path):
    from helpers import write_npz_subset

    src = write_npz_subset(tmp_path / "b.npz", 32, 8)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, progress=False)
    assert not (ds / "plan.json").exists()
    run = api.train(ds, epochs=1, quiet=True)
    assert (ds / "plan.json").is_file() and (ds / "fingerprint.json").is_file()
    assert any((ds / "cache").glob("*/train_0000.npy"))
    assert (run / "fold_0" / "checkpoint_final.pt").is_file()


def test_budget_becomes_epochs_and_training_runs_exactly_that_many(tiny_breast):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    assert plan["epochs"] == 2
    run = api.train(tiny_breast, quiet=True)
    rows = (run / "fold_0" / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1]


def test_plan_budget_minutes_sets_epochs(tiny_breast):
    small = api.plan(tiny_breast, budget_minutes=0.05, quiet=True)
    large = api.plan(tiny_breast, budget_minutes=5, quiet=True)
    assert large["epochs"] > small["epochs"] >= 1
    assert json.loads((tiny_breast / "plan.json").read_text())["epochs"] == large["epochs"]


def test_edited_plan_is_obeyed(tiny_breast):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["epochs"] = 3
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    run = api.train(tiny_breast, quiet=True)
    assert len((run / "fold_0" / "log.jsonl").read_text().splitlines()) == 3
    assert json.loads((run / "plan.json").read_text())["network"]["widths"] == [8, 16, 16, 32]


# -- folds --------------------------------------------------------------------------------------
def test_fold_all_trains_every_case_without_validation(tiny_breast):
    run = api.train(tiny_breast, fold="all", quiet=True)
    fold = run / "fold_all"
    rows = [json.loads(r) for r in (fold / "log.jsonl").read_text().splitlines()]
    assert all("val_score" not in r for r in rows)
    decisions = json.loads((fold / "decisions.json").read_text())
    assert decisions["validation_cases"] == [] and "threshold" not in decisions


def test_predict_ensembles_every_fold_of_a_run(tiny_breast, tmp_path):
    run = api.train(tiny_breast, fold=0, quiet=True)
    api.train(tiny_breast, fold="all", out=run, quiet=True)
    _, _, _, models, _ = api.load_run(run, api.resolve_device("cpu"))
    assert len(models) == 2
    out = api.predict(run, [tiny_breast], tmp_path / "pred", quiet=True)
    one = api.predict(run, [tiny_breast], tmp_path / "pred0", folds=[0], quiet=True)
    p_all = np.loadtxt(out / "predictions.csv", delimiter=",", skiprows=1, usecols=(2, 3))
    p_one = np.loadtxt(one / "predictions.csv", delimiter=",", skiprows=1, usecols=(2, 3))
    assert not np.allclose(p_all, p_one)


def test_run_every_fold_scores_each_case_with_the_fold_that_held_it_out(tmp_path):
    from medsight.demo import demo_data_path

    z = np.load(demo_data_path())  # a train-only file: the importer makes the folds
    src = tmp_path / "breast_train.npz"
    np.savez(src, train_images=z["train_images"][:48], train_labels=z["train_labels"][:48])
    r = run_cli("run", src, tmp_path / "out", "--folds", "2", "--fold", "every", "--epochs", "1",
                "--budget-minutes", "0.1", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "out" / "run"
    assert (run / "fold_0" / "checkpoint_final.pt").is_file() and (run / "fold_1" / "checkpoint_final.pt").is_file()
    splits = json.loads((tmp_path / "out" / "dataset" / "manifest.json").read_text())["splits"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_cases"] == 48  # every case once, from the fold that did not train on it
    with open(run / "validation_predictions" / "predictions.csv") as f:
        pooled = {row["case"]: float(row["prob_1"]) for row in csv.DictReader(f)}
    assert sorted(pooled) == sorted(splits[0]["val"] + splits[1]["val"])
    case = splits[1]["val"][0]
    alone = {}
    for k in (0, 1):
        out = api.predict(run, [tmp_path / "out" / "dataset"], tmp_path / f"fold{k}", folds=[k], quiet=True)
        with open(out / "predictions.csv") as f:
            alone[k] = {row["case"]: float(row["prob_1"]) for row in csv.DictReader(f)}
    # (to the last printed digit: a batch of other cases may move the sixth decimal)
    assert pooled[case] == pytest.approx(alone[1][case], abs=5e-6)
    assert abs(pooled[case] - alone[0][case]) > 1e-4
    assert all(pooled[c] == pytest.approx(alone[0][c], abs=5e-6) for c in splits[0]["val"])
    # the report's class-activation maps come from the network that did not train on the case
    assert "(held it out)" in (run / "report.html").read_text()
    # an interrupted cross-validation (fold 1 never began) resumes: fold 0 kept as it was, fold 1 trained
    kept = (run / "fold_0" / "checkpoint_final.pt").read_bytes()
    decided = (run / "fold_0" / "decisions.json").read_text()
    shutil.rmtree(run / "fold_1")
    r = run_cli("run", src, tmp_path / "out", "--folds", "2", "--fold", "every", "--epochs", "1",
                "--budget-minutes", "0.1", "--device", "cpu", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fold 0: finished before" in r.stderr + r.stdout
    assert (run / "fold_0" / "checkpoint_final.pt").read_bytes() == kept
    assert (run / "fold_0" / "decisions.json").read_text() == decided
    assert (run / "fold_1" / "checkpoint_final.pt").is_file()
    assert json.loads((run / "metrics.json").read_text())["num_cases"] == 48


def test_fold_every_is_for_training_only(tmp_path):
    r = run_cli("export", tmp_path, "--fold", "every")
    assert r.returncode == 2 and "a fold is a number" in r.stderr


# -- where outputs go, axes ---------------------------------------------------------------------
def test_classification_outputs_and_array_order_from_png_and_nifti(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    z = np.load(json.loads((tiny_breast / "manifest.json").read_text())["source"])
    img = z["val_images"][3]
    png = tmp_path / "scan_0003.png"
    PILImage.fromarray(img).save(png)
    nii = tmp_path / "scan_0004.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(z["val_images"][4], np.eye(4)), nii)
    out = tmp_path / "out"
    r = run_cli("predict", run, png, nii, tiny_breast, "-o", out)
    assert r.returncode == 0, r.stderr
    with open(out / "predictions.csv") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    assert list(next(iter(rows.values())).keys()) == ["case", "label", "prob_0", "prob_1"]
    # the PNG written from the npz array predicts exactly what the npz case predicts
    assert rows["scan_0003"]["prob_1"] == rows["val_0003"]["prob_1"]
    assert rows["scan_0004"]["prob_1"] == rows["val_0004"]["prob_1"]
    assert rows["scan_0003"]["label"] in ("0", "1")


# -- errors ---------------------------------------------------------------------------------------
def test_missing_folder_is_one_line_exit_2(tmp_path):
    r = run_cli("import", tmp_path / "nope", tmp_path / "ds")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and "nope" in r.stderr
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("--debug", "import", tmp_path / "nope", tmp_path / "ds")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_truncated_nifti_in_msd_folder_refused_naming_it(tmp_path, shared_data):
    import nibabel as nib

    src = tmp_path / "Task01"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    flair = nib.load(shared_data / "brats_examples/brats_2013_pat0004_1/Flair_subtrMeanDivStd.nii.gz")
    lab = nib.load(shared_data / "brats_examples/brats_2013_pat0004_1/OTMultiClass.nii.gz")
    crop = (slice(80, 112), slice(80, 112), slice(60, 76))
    for i in range(3):
        nib.save(nib.Nifti1Image(np.asarray(flair.dataobj)[crop].astype(np.float32), flair.affine), src / f"imagesTr/c{i}.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(lab.dataobj)[crop].astype(np.uint8), lab.affine), src / f"labelsTr/c{i}.nii.gz")
    raw = (src / "imagesTr/c1.nii.gz").read_bytes()
    (src / "imagesTr/c1.nii.gz").write_bytes(raw[: len(raw) // 2])
    (src / "dataset.json").write_text(json.dumps({
        "name": "t", "modality": {"0": "FLAIR"}, "labels": {"0": "background", "1": "a", "2": "b", "3": "c", "4": "d"},
        "training": [{"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"} for i in range(3)]}))
    r = run_cli("import", src, tmp_path / "ds")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "c1.nii.gz" in line and "\n" not in line and "Traceback" not in r.stderr
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_predict_refuses_inputs_that_do_not_fit(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    rgb = tmp_path / "colour.png"
    PILImage.fromarray(np.zeros((28, 28, 3), np.uint8)).save(rgb)
    r = run_cli("predict", run, rgb, "-o", tmp_path / "o")
    assert r.returncode == 2 and "3 channel" in r.stderr and "colour.png" in r.stderr


def test_predict_refuses_two_inputs_of_one_case_name(tiny_breast, tmp_path):
    """Two real images named alike in two folders (or a dataset case and a file of its name) would write one
    output over the other (or be read as two channels of one case): refused, naming both, nothing written.
    The same file given twice is one case."""
    run = api.train(tiny_breast, quiet=True)
    z = np.load(json.loads((tiny_breast / "manifest.json").read_text())["source"])
    for folder, i in (("a", 3), ("b", 4)):
        (tmp_path / folder).mkdir()
        PILImage.fromarray(z["val_images"][i]).save(tmp_path / folder / "scan.png")
    r = run_cli("predict", run, tmp_path / "a" / "scan.png", tmp_path / "b", "-o", tmp_path / "o")
    assert r.returncode == 2 and "two inputs give the case name 'scan'" in r.stderr
    assert "a/scan.png" in r.stderr and "b/scan.png" in r.stderr and not (tmp_path / "o").exists()
    PILImage.fromarray(z["val_images"][3]).save(tmp_path / "val_0003.png")
    r = run_cli("predict", run, tiny_breast, tmp_path / "val_0003.png", "-o", tmp_path / "o")
    assert r.returncode == 2 and "'val_0003'" in r.stderr and not (tmp_path / "o").exists()
    r = run_cli("predict", run, tmp_path / "a" / "scan.png", tmp_path / "a", "-o", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "o" / "predictions.csv") as f:
        assert [row["case"] for row in csv.DictReader(f)] == ["scan"]


def test_predict_warns_of_an_image_without_a_picture(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    # one row of a real BreastMNIST image, repeated: predicted, with a warning naming the file
    one = np.load(json.loads((tiny_breast / "manifest.json").read_text())["source"])["val_images"][3][14]
    striped = tmp_path / "striped.png"
    PILImage.fromarray(np.repeat(one[None], 28, axis=0)).save(striped)
    r = run_cli("predict", run, striped, "-o", tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert "striped.png: every column holds one value (vertical stripes)" in r.stderr
    assert (tmp_path / "s" / "predictions.csv").is_file()


def test_predict_continue_skips_cases_already_written(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    out = tmp_path / "o"
    api.predict(run, [tiny_breast], out, quiet=True)
    state = (out / ".medsight_predict.jsonl").read_text().splitlines()
    # forge the record of one case: --continue must keep it rather than predict it again
    rec = json.loads(state[0])
    rec["rows"][0]["prob_0"] = "0.123456"
    (out / ".medsight_predict.jsonl").write_text("\n".join([json.dumps(rec)] + state[1:]) + "\n")
    api.predict(run, [tiny_breast], out, continue_=True, quiet=True)
    with open(out / "predictions.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert rows[rec["case"]]["prob_0"] == "0.123456"
    api.predict(run, [tiny_breast], out, quiet=True)
    with open(out / "predictions.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert rows[rec["case"]]["prob_0"] != "0.123456"


def test_help_names_every_command_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("import", "plan", "preprocess", "train", "predict", "evaluate", "report", "export", "run", "demo"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "example:" in capsys.readouterr().out


def test_run_takes_the_importers_arguments_and_cross_validates_segmentation(tmp_path, shared_data):
    from helpers import write_isbi_pairs

    src = write_isbi_pairs(tmp_path / "src", shared_data, n=4, size=64)
    (src / "images").rename(src / "slices")  # folder names the pairs importer would not guess
    (src / "labels").rename(src / "membranes")
    r = run_cli("run", src, tmp_path / "out", "--format", "pairs", "--images-dir", "slices", "--labels-dir",
                "membranes", "--label-map", "0:1,255:0", "--label-names", "1:membrane", "--folds", "2",
                "--fold", "every", "--epochs", "1", "--budget-minutes", "0.1", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "dataset" / "manifest.json").read_text())
    assert len(manifest["splits"]) == 2
    metrics = json.loads((tmp_path / "out" / "run" / "metrics.json").read_text())
    assert set(metrics["summary"]) == {"membrane"} and metrics["num_cases"] == 4  # both folds' validation cases
    predictions = tmp_path / "out" / "run" / "validation_predictions"
    with open(predictions / "volumes.csv") as f:
        assert {row["case"] for row in csv.DictReader(f)} == {c["id"] for c in manifest["cases"]}
    assert len(list(predictions.glob("*.png"))) == 4


def test_import_and_run_offer_every_importer_format():
    """`import --format` and `run --format` list the importers' layouts (run's was free text, refused only
    inside the import)."""
    from medsight.cli import IMPORT_FORMATS, build_parser
    from medsight.datasets.importers import FORMATS

    assert IMPORT_FORMATS == ["auto", *FORMATS]
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "src", "out", "--format", "nifti-folder"])
    assert parser.parse_args(["run", "src", "out", "--format", "voc"]).format == "voc"
