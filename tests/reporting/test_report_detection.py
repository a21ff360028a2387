"""The detection report: PR and FROC curves, validation images with boxes (real BCCD subset, tiny run)."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write_bccd_subset

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.planning.plan import load_plan
from medsight.reporting.detection_curves import class_curves
from medsight.reporting.detection_data import best_f1_threshold, image_counts, load_detections
from medsight.reporting.detection_examples import pick_images
from medsight.reporting.sources import find_sources

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,')



@pytest.fixture(scope="module")
def bccd_run(tmp_path_factory, shared_data):
    """(dataset, run, validation predictions) of 6 + 3 real BCCD images, 1/8 resolution, 2 x 2 steps (~5 s)."""
    import medsight.tasks.detection as detection_task

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bccd")
    ds = root / "ds"
    api.import_dataset(write_bccd_subset(root / "voc", shared_data / "bccd"), ds, progress=False)
    api.plan(ds, quiet=True, measure=False)
    plan = load_plan(ds)
    plan.update({"target_spacing": [8.0, 8.0], "patch_size": [60, 80], "batch_size": 2, "steps_per_epoch": 2,
                 "epochs": 2})
    plan["validation"].update({"every": 1, "max_cases": 2})
    (ds / "plan.json").write_text(json.dumps(plan, indent=1))
    run = api.train(ds, fold=0, quiet=True, threads=1)
    val = [c.id for c in Manifest.load(ds).fold_cases(0)[1]]
    pred = api.predict(run, [ds], run / "validation_predictions", quiet=True, threads=1)
    saved = detection_task.BOOTSTRAP_SAMPLES
    detection_task.BOOTSTRAP_SAMPLES = 50
    try:
        api.evaluate(pred, ds, case_ids=val, quiet=True)
    finally:
        detection_task.BOOTSTRAP_SAMPLES = saved
    return ds, run, pred


def test_report_has_pr_froc_and_three_validation_images(bccd_run):
    ds, run, pred = bccd_run
    html = api.report(run, quiet=True).read_text()
    alts = IMG.findall(html)
    assert "precision-recall curves" in alts and "FROC curve" in alts
    examples = [a for a in alts if a.split(":")[0] in ("best", "median", "worst")]
    assert len(examples) == 3 and 'class="note"' not in html
    assert re.search(r"Predicted boxes scoring at least [0-9.]+ \(the threshold of the best F1", html)
    assert "<th>AP@0.5</th>" in html and "<td>RBC</td>" in html


def _write_detections(path: Path, manifest: Manifest, cases: list[str]) -> dict[str, tuple[int, int]]:
    """Exact boxes for two of every three reference boxes (scores 0.9 .. 0.5) and one false positive of
    score 0.05 per image; returns per class (boxes found, boxes)."""
    counts: dict[str, list[int]] = {}
    rows = []
    for c in cases:
        boxes = manifest.case_by_id[c].boxes
        for k, b in enumerate(boxes):
            name = manifest.labels[str(int(b["label"]))]
            found = counts.setdefault(name, [0, 0])
            found[1] += 1
            if k % 3 != 2:
                found[0] += 1
                rows.append([c, name, round(0.9 - 0.4 * k / len(boxes), 4), *b["box"]])
        rows.append([c, "RBC", 0.05, 1.0, 1.0, 9.0, 9.0])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "label", "score", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def test_pr_curve_ends_at_the_recall_of_the_detections_and_recomputes_the_same(bccd_run, tmp_path, monkeypatch):
    monkeypatch.setattr("medsight.tasks.detection.BOOTSTRAP_SAMPLES", 20)
    ds, run, _ = bccd_run
    manifest = Manifest.load(ds)
    cases = [c.id for c in manifest.fold_cases(0)[1]]
    out = tmp_path / "out"
    out.mkdir()
    found = _write_detections(out / "detections.csv", manifest, cases)
    metrics = api.evaluate(out, ds, case_ids=cases, quiet=True)
    curves = class_curves(metrics)
    assert set(curves) == {k for k, (_, n) in found.items() if n}
    for name, (hits, n) in found.items():
        c = curves[name]
        assert c["n_gt"] == n and c["recall"][-1] == pytest.approx(hits / n, abs=1e-4)
        assert c["sensitivity"][-1] == pytest.approx(hits / n, abs=1e-4)
        if name != "RBC":  # only RBC has false positives: the others end at precision 1
            assert c["precision"][-1] == pytest.approx(1.0)
    assert curves["RBC"]["fps_per_image"][-1] == pytest.approx(1.0)  # one false positive per image
    sources = find_sources(out / "metrics.json", metrics, run)
    stripped = {**metrics, "per_class": {k: {kk: vv for kk, vv in v.items() if not kk.endswith("_curve")}
                                         for k, v in metrics["per_class"].items()}}
    again = class_curves(stripped, sources)  # an older metrics.json: curves recomputed from detections.csv
    for name in curves:
        for key in ("recall", "precision", "fps_per_image", "sensitivity"):
            np.testing.assert_allclose(again[name][key], curves[name][key], atol=1e-4)
    data = load_detections(sources, cases)
    threshold, f1 = best_f1_threshold(data)
    assert 0.05 < threshold <= 0.9  # every false positive is cut, every exact box kept
    hits, total = sum(h for h, _ in found.values()), sum(n for _, n in found.values())
    assert f1 == pytest.approx(2 * hits / (hits + total))
    counts = image_counts(data, threshold)
    assert all(fp == 0 for _, fp, _ in counts) and sum(tp for tp, _, _ in counts) == hits
    assert [r for r, _ in pick_images(counts)] == ["best", "median", "worst"]


def test_missing_detections_become_notes_and_the_curves_stay(bccd_run, tmp_path):
    ds, run, _ = bccd_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics_path = copy / "validation_predictions" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["sources"]["predictions"] = str(copy / "validation_predictions")
    metrics_path.write_text(json.dumps(metrics))
    (copy / "validation_predictions" / "detections.csv").unlink()
    html = api.report(copy, quiet=True).read_text()
    alts = IMG.findall(html)
    assert "precision-recall curves" in alts and "FROC curve" in alts  # kept in metrics.json
    assert re.search(r'<p class="note">detection examples: not shown \(the predictions folder was not found\)', html)
    for v in metrics["per_class"].values():
        v.pop("pr_curve")
    metrics_path.write_text(json.dumps(metrics))
    html = api.report(copy, quiet=True).read_text()
    assert '<p class="note">precision-recall and FROC curves: not shown' in html and "FROC curve" not in IMG.findall(html)
