"""The segmentation report: best/median/worst overlays and the Dice histogram of a tiny real ISBI EM run."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from helpers import shrink_plan, write_isbi_pairs

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.reporting.segmentation_overlays import case_dice, overlay_figure, pick_cases, pick_slice

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,')



@pytest.fixture(scope="module")
def em_run(tmp_path_factory, shared_data):
    """(dataset, run, validation predictions) of 6 real ISBI crops, 2 folds, a tiny 2-epoch U-Net (~4 s)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("em")
    src = write_isbi_pairs(root / "em", shared_data, n=6)
    ds = root / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    shrink_plan(ds, epochs=2)
    run = api.train(ds, fold=0, quiet=True, threads=1)
    val = [c.id for c in Manifest.load(ds).fold_cases(0)[1]]
    pred = api.predict(run, [ds], run / "validation_predictions", quiet=True, threads=1)
    api.evaluate(pred, ds, case_ids=val, quiet=True)
    return ds, run, pred


def test_report_shows_best_median_worst_overlays_and_dice_histogram(em_run):
    ds, run, pred = em_run
    metrics = json.loads((pred / "metrics.json").read_text())
    assert metrics["sources"]["predictions"] == str(pred.resolve())  # the hook in api.evaluate
    html = api.report(run, quiet=True).read_text()
    alts = IMG.findall(html)
    assert "Dice per case" in alts
    overlays = [a for a in alts if a.split(":")[0] in ("best", "median", "worst")]
    assert len(overlays) == 3 and 'class="note"' not in html
    ranked = sorted(metrics["per_case"], key=lambda c: -case_dice(c))
    assert overlays[0].startswith(f"best: {ranked[0]['case']} ")
    assert overlays[1].startswith(f"median: {ranked[1]['case']} ")
    assert overlays[2].startswith(f"worst: {ranked[-1]['case']} ")
    assert f"(mean Dice {case_dice(ranked[0]):.3f})" in overlays[0]


def test_missing_prediction_or_dataset_becomes_a_note(em_run, tmp_path):
    ds, run, pred = em_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics_path = copy / "validation_predictions" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics.pop("sources")  # an older metrics.json: the report finds the folder beside it and run.json's dataset
    metrics_path.write_text(json.dumps(metrics))
    worst = min(metrics["per_case"], key=case_dice)["case"]
    (copy / "validation_predictions" / f"{worst}.png").unlink()
    html = api.report(copy, quiet=True).read_text()
    overlays = [a for a in IMG.findall(html) if a.split(":")[0] in ("best", "median", "worst")]
    assert len(overlays) == 2
    assert re.search(rf'<p class="note">worst: {worst} .*no prediction file', html)
    info = json.loads((copy / "run.json").read_text())
    info["dataset_dir"] = str(tmp_path / "gone")
    (copy / "run.json").write_text(json.dumps(info))
    html = api.report(copy, quiet=True).read_text()
    assert "Dice per case" in html and html.count("reference dataset (manifest.json) was not found") == 3


def test_pick_cases_and_axial_slice():
    per_case = [{"case": f"c{i}", "metrics": {"a": {"dice": d}, "b": {"dice": d / 2}}} for i, d in
                enumerate([0.2, 0.9, 0.5, 0.7, 0.1])]
    assert [(r, c) for r, c, _ in pick_cases(per_case)] == [("best", "c1"), ("median", "c2"), ("worst", "c4")]
    assert pick_cases(per_case)[0][2] == pytest.approx(0.675)
    assert [r for r, _, _ in pick_cases(per_case[:2])] == ["best", "worst"]
    ref = np.zeros((6, 6, 10), np.int16)
    pred = np.zeros_like(ref)
    pred[:, :, 7] = 1
    assert pick_slice(ref, pred) == 7  # no reference foreground: the most predicted slice
    ref[1:3, 1:3, 4] = 1
    ref[1:4, 1:4, 2] = 2
    assert pick_slice(ref, pred) == 2 and pick_slice(np.zeros_like(ref), np.zeros_like(ref)) == 5
    assert pick_slice(ref[..., 0], pred[..., 0]) is None
    image = np.random.default_rng(0).normal(size=(2, 6, 6, 10)).astype(np.float32)
    tag = overlay_figure(image, ref, pred, {1: "edema", 2: "tumour"}, "3D case")
    assert tag.startswith('<img alt="3D case" src="data:image/png;base64,')
