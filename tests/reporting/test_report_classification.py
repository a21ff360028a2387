"""The classification report: Grad-CAM of the run's networks over picked validation cases (tiny BreastMNIST run)."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.reporting.cam_figures import pick_cases, target_index

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,')



@pytest.fixture()
def breast_run(tiny_breast):
    """(dataset, run, predictions) of the tiny BreastMNIST plan (a 2-member small ResNet, 2 epochs)."""
    run = api.train(tiny_breast, quiet=True, threads=1)
    val = [c.id for c in Manifest.load(tiny_breast).fold_cases(0)[1]]
    pred = api.predict(run, [tiny_breast], run / "validation_predictions", quiet=True, threads=1)
    api.evaluate(pred, tiny_breast, case_ids=val, quiet=True)
    return tiny_breast, run, pred


def test_report_draws_cams_of_correct_cases_and_errors_then_notes_without_checkpoints(breast_run, tmp_path):
    ds, run, pred = breast_run
    metrics = json.loads((pred / "metrics.json").read_text())
    picks = pick_cases(metrics["per_case"])
    assert 2 <= len(picks) <= 4
    html = api.report(run, quiet=True).read_text()
    assert "<h3>Class-activation maps</h3>" in html and 'class="note"' not in html
    cams = [a for a in IMG.findall(html) if re.match(r"(TP|TN|FP|FN|correct|error): ", a)]
    assert [a.split(",")[0] for a in cams] == [f"{kind}: {e['case']}" for kind, e in picks]
    assert all(e["reference"] == e["predicted"] for kind, e in picks if kind in ("TP", "TN"))
    assert all(e["reference"] != e["predicted"] for kind, e in picks if kind in ("FP", "FN"))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for f in copy.glob("fold_*/checkpoint_*.pt*"):
        f.unlink()
    html = api.report(copy, quiet=True).read_text()
    assert re.search(r'<p class="note">class-activation maps: not shown \(the run.{1,6}s networks could not be loaded', html)
    assert "ROC curve" in IMG.findall(html)  # the rest of the report stays


def test_pick_cases_puts_confident_true_positives_first_then_confident_errors():
    def case(name, ref, pred, p1):
        return {"case": name, "reference": ref, "predicted": pred, "prob_0": 1 - p1, "prob_1": p1}

    per_case = [case("tn", "0", "0", 0.1), case("tp_weak", "1", "1", 0.6), case("tp_strong", "1", "1", 0.95),
                case("fn", "1", "0", 0.3), case("fp_strong", "0", "1", 0.9), case("fp_weak", "0", "1", 0.55)]
    picks = pick_cases(per_case)
    assert [(k, e["case"]) for k, e in picks] == [("TP", "tp_strong"), ("TP", "tp_weak"), ("FP", "fp_strong"),
                                                 ("FN", "fn")]
    assert [target_index(e) for _, e in picks] == [1, 1, 1, 0]
    only_negatives = [case("tn", "0", "0", 0.1), case("tn2", "0", "0", 0.2)]
    assert [k for k, _ in pick_cases(only_negatives)] == ["TN", "TN"]
    three = [{"case": "a", "reference": "x", "predicted": "y", "prob_x": 0.2, "prob_y": 0.7, "prob_z": 0.1}]
    assert [k for k, _ in pick_cases(three)] == ["error"] and target_index(three[0]) == 1
