"""Refusals that come before any work: one line naming the file or folder, exit 2, nothing left behind.

Found by a sweep of bad input through the CLI (session 17): train, compare, predict, evaluate and report.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_bccd_subset, write_npz_subset

from medsight import api
from medsight.cli import main
from medsight.errors import InputError


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


@pytest.fixture()
def trained_breast(tiny_breast, tmp_path) -> tuple[Path, Path]:
    """A tiny BreastMNIST run (fold 0, 2 epochs) and its predictions of the dataset's cases."""
    run = api.train(tiny_breast, fold=0, out=tmp_path / "run", device="cpu", quiet=True)
    out = api.predict(run, [tiny_breast], tmp_path / "pred", device="cpu", quiet=True)
    return run, out


def test_train_refuses_an_unknown_fold_before_writing(tiny_breast, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_breast), "--fold", "7", "--out", str(run)]) == 2
    assert "fold 7 does not exist" in _err(capsys) and not run.exists()


def test_resume_starts_afresh_without_a_checkpoint_and_refuses_a_damaged_final_one(tiny_breast, tmp_path, capsys,
                                                                                    caplog):
    """Killed before its first checkpoint, a fold kept nothing: --resume trains it from the start (nnU-Net's
    --c does the same) instead of asking the user to drop the flag. A finished fold is kept only if its
    final checkpoint is intact."""
    run = tmp_path / "run"
    args = ["train", str(tiny_breast), "--fold", "0", "--resume", "--out", str(run), "--device", "cpu"]
    assert main(args) == 0
    assert "no checkpoint to resume from: training from the start" in caplog.text
    final = run / "fold_0" / "checkpoint_final.pt"
    assert final.is_file()
    with open(final, "r+b") as f:
        f.truncate(1000)
    assert main(args) == 2
    err = _err(capsys)
    assert "checkpoint_final.pt" in err and "checksum" in err and len(err.splitlines()) == 1


def test_a_dataset_of_one_class_is_refused_at_planning(tmp_path):
    src = write_npz_subset(tmp_path / "one.npz", n_train=24, n_val=8)
    z = dict(np.load(src))
    z["train_labels"][:] = 1
    z["val_labels"][:] = 1
    np.savez(src, **z)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, progress=False)
    with pytest.raises(InputError, match="at least two classes"):
        api.plan(ds, quiet=True, measure=False)


def test_validation_cases_of_one_class_score_by_accuracy(tiny_breast, tmp_path):
    """A fold whose validation cases hold one class has no AUC: training goes on, scored by accuracy."""
    manifest = json.loads((tiny_breast / "manifest.json").read_text())
    label = {c["id"]: c["label"] for c in manifest["cases"]}
    val = manifest["splits"][0]["val"]
    common = max(set(label[i] for i in val), key=[label[i] for i in val].count)
    manifest["splits"][0]["val"] = [i for i in val if label[i] == common]
    (tiny_breast / "manifest.json").write_text(json.dumps(manifest))
    run = api.train(tiny_breast, fold=0, out=tmp_path / "run", device="cpu", quiet=True)
    log = [json.loads(line) for line in (run / "fold_0/log.jsonl").read_text().splitlines()]
    scored = [r for r in log if "val_score" in r]
    assert scored and all(0 <= r["val_score"] <= 1 for r in scored)


def test_predict_leaves_nothing_when_it_refuses_the_first_input(trained_breast, tmp_path, capsys):
    run, _ = trained_breast
    text = tmp_path / "not_an_image.png"
    text.write_text("hello")
    out = tmp_path / "p"
    assert main(["predict", str(run), str(text), "-o", str(out)]) == 2
    assert "not_an_image.png" in _err(capsys) and not out.exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["predict", str(run), str(text), "-o", str(a_file)]) == 2
    assert "is a file, not a folder" in _err(capsys) and a_file.read_text() == "x"
    assert main(["run", str(tmp_path / "x.npz"), str(a_file)]) == 2
    assert "is a file, not a folder" in _err(capsys)


def _rewrite(path: Path, edit) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows, fields = edit(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_evaluate_refuses_a_broken_predictions_csv_naming_file_and_line(trained_breast, tiny_breast, capsys):
    _, out = trained_breast
    path = out / "predictions.csv"
    assert main(["evaluate", str(out), str(tiny_breast)]) == 0
    capsys.readouterr()
    original = path.read_text()
    fields = original.splitlines()[0].split(",")
    prob = [c for c in fields if c.startswith("prob_")][0]

    _rewrite(path, lambda rows: ([{**r, prob: "nan"} if i == 1 else r for i, r in enumerate(rows)], fields))
    assert main(["evaluate", str(out), str(tiny_breast)]) == 2
    err = _err(capsys)
    assert str(path) in err and "line 3" in err and "NaN" in err and "\n" not in err

    path.write_text(original)
    _rewrite(path, lambda rows: ([{**r, "label": "alien"} if i == 0 else r for i, r in enumerate(rows)], fields))
    assert main(["evaluate", str(out), str(tiny_breast)]) == 2
    err = _err(capsys)
    assert "line 2: label 'alien' is not a class" in err and str(path) in err

    path.write_text(original)
    _rewrite(path, lambda rows: ([{k: v for k, v in r.items() if k != "label"} for r in rows],
                                 [c for c in fields if c != "label"]))
    assert main(["evaluate", str(out), str(tiny_breast)]) == 2
    err = _err(capsys)
    assert "lacks the columns label" in err and str(path) in err


def test_evaluate_refuses_detections_that_are_not_boxes(tmp_path, shared_data, capsys):
    src = write_bccd_subset(tmp_path / "voc", shared_data / "bccd", n_train=2, n_val=1)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, progress=False)
    case = json.loads((ds / "manifest.json").read_text())["cases"][0]["id"]
    out = tmp_path / "pred"
    out.mkdir()
    header = "case,label,score,x0,y0,x1,y1\n"
    for row, problem in ((f"{case},RBC,0.9,nan,10,50,60", "line 2 has a score or coordinate that is NaN"),
                         (f"{case},RBC,0.9,100,10,50,60", "line 2: the box [100.0, 10.0, 50.0, 60.0] ends before"),
                         (f"{case},Alien,0.9,10,10,50,60", "line 2: unknown class 'Alien'")):
        (out / "detections.csv").write_text(header + row + "\n")
        assert main(["evaluate", str(out), str(ds)]) == 2
        err = _err(capsys)
        assert problem in err and str(out / "detections.csv") in err
    (out / "detections.csv").write_text(header + f"{case},RBC,0.9,10,10,50,60\n")
    assert main(["evaluate", str(out), str(ds), "-o", str(tmp_path / "m.json")]) == 0


def test_report_refuses_a_dataset_folder(tiny_breast, capsys):
    assert main(["report", str(tiny_breast)]) == 2
    err = _err(capsys)
    assert "not a medsight run folder" in err and "DATASET_DIR/run" in err
    assert not (tiny_breast / "report.html").exists()


def test_compare_refuses_before_writing(tiny_breast, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(tiny_breast), "-o", str(out), "--folds", "9"]) == 2
    assert "folds [9] do not exist" in _err(capsys) and not out.exists()
    garbage = tmp_path / "enc.safetensors"
    garbage.write_bytes(b"not a tensor file")
    assert main(["compare", str(tiny_breast), "-o", str(out), "--encoder", str(garbage)]) == 2
    assert "enc.safetensors" in _err(capsys) and not out.exists()
    manifest = json.loads((tiny_breast / "manifest.json").read_text())
    label = {c["id"]: c["label"] for c in manifest["cases"]}
    train = manifest["splits"][0]["train"]
    manifest["splits"][0]["train"] = [i for i in train if label[i] == label[train[0]]]
    (tiny_breast / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(tiny_breast), "-o", str(out), "--folds", "0"]) == 2
    assert "fold 0's training cases are all of one class" in _err(capsys) and not out.exists()


def test_api_arguments_a_python_caller_gets_wrong_are_refused_in_one_line(trained_breast, tiny_breast, tmp_path):
    """What the command line's parser never lets through, the API checks itself (a sweep found bare
    ValueErrors and TypeErrors from deep inside, and silent acceptance of 0 epochs or a negative budget)."""
    from medsight.compare import compare
    from medsight.pretrain import pretrain

    run, preds = trained_breast
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    refused = [
        (lambda: api.plan(tiny_breast, budget_minutes=float("nan"), measure=False), "budget_minutes must be"),
        (lambda: api.plan(tiny_breast, budget_minutes=-5, measure=False), "budget_minutes must be"),
        (lambda: api.train(tiny_breast, fold="x"), "a fold is a number"),
        (lambda: api.train(tiny_breast, fold=1.0), "a fold is a number"),
        (lambda: api.train(tiny_breast, epochs=0), "epochs must be a whole number of at least 1"),
        (lambda: api.train(tiny_breast, out=a_file / "run"), "is a file, not a folder"),
        (lambda: api.predict(run, [], tmp_path / "p1"), "nothing to predict"),
        (lambda: api.predict(run, [tiny_breast], run), "holds a run (run.json)"),
        (lambda: api.import_dataset(tiny_breast, run), "holds a run (run.json)"),
        (lambda: api.evaluate(preds, tiny_breast, output=tmp_path), "is a folder, not a file"),
        (lambda: api.run(tiny_breast, tmp_path / "r", fold="x"), "a fold is a number"),
        (lambda: compare(tiny_breast, tmp_path / "c", strategies=[]), "no strategies"),
        (lambda: compare(tiny_breast, tmp_path / "c", folds=[]), "folds must be fold numbers"),
        (lambda: compare(tiny_breast, tmp_path / "c", side=0), "side must be"),
        (lambda: pretrain(tiny_breast, tmp_path / "e.safetensors", epochs=0), "epochs must be"),
        (lambda: pretrain(tiny_breast, tmp_path / "e.safetensors", batch_size=1), "batch_size must be"),
    ]
    for call, problem in refused:
        with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists() and not (tmp_path / "p1").exists()


def test_a_run_is_never_written_into_a_dataset_folder(tiny_breast, tmp_path):
    other = tmp_path / "other"
    api.import_dataset(write_npz_subset(tmp_path / "o.npz", n_train=24, n_val=8), other, progress=False)
    before = sorted(p.name for p in other.iterdir())
    with pytest.raises(InputError, match="holds a dataset"):
        api.train(tiny_breast, out=other)
    assert sorted(p.name for p in other.iterdir()) == before


def test_one_input_path_need_not_be_in_a_list(trained_breast, tiny_breast, tmp_path):
    run, _ = trained_breast
    out = api.predict(run, str(tiny_breast), tmp_path / "one", device="cpu", quiet=True)  # a str, not [str]
    with open(out / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(json.loads((tiny_breast / "manifest.json").read_text())["cases"])


def test_predict_names_the_folds_it_asked_for_that_were_never_trained(trained_breast, tmp_path):
    from medsight.errors import CheckpointError

    run, _ = trained_breast
    with pytest.raises(CheckpointError, match=r"no trained fold 5 here \(trained: 0\)"):
        api.predict(run, [tmp_path / "ds"], tmp_path / "p", folds=[0, 5], quiet=True)
    assert not (tmp_path / "p").exists()
