"""3D detection through the whole flow on real BraTS crops: tumour components as boxes (``import --task detection``)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.planning.plan import load_plan
from medsight.preprocessing.cache import CachedCases, cache_dir
from medsight.tasks import get_task
from medsight.tasks.detection import network_to_original

from helpers import shrink_plan, write_brats_cases

CROP = (40, 40, 24)  # write_brats_cases' crop, (i, j, k)


@pytest.fixture(scope="module")
def brats_boxes(tmp_path_factory, shared_data) -> tuple[Path, Path]:
    """(cases source, imported 3D detection dataset of 3 BraTS crops, whole-tumour components as boxes)."""
    root = tmp_path_factory.mktemp("brats_det")
    src = write_brats_cases(root / "src", shared_data, n=3)
    ds = root / "ds"
    api.import_dataset(src, ds, format="cases", task="detection", regions="tumour=1,2,3,4", n_folds=3,
                       min_box_size=5, progress=False)
    return src, ds


@pytest.fixture()
def fresh(brats_boxes, tmp_path) -> tuple[Path, Path]:
    src, ds = brats_boxes
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy, ignore=shutil.ignore_patterns("cache", "run", "plan.json", "fingerprint.json"))
    return src, copy


def test_plan_is_3d_with_a_unet_encoder(fresh):
    _, ds = fresh
    plan = api.plan(ds, budget_minutes=1, quiet=True, measure=False)
    assert plan["task"] == "detection" and plan["dims"] == 3
    assert plan["network"]["encoder"] == "unet" and plan["network"]["spatial_dims"] == 3
    assert plan["network"]["in_channels"] == 2 and plan["network"]["num_classes"] == 1
    assert len(plan["detection"]["stride"]) == 3 and plan["loss"]["name"] == "centernet"


def test_perfect_3d_maps_decode_to_the_boxes_with_ap_one(fresh, tmp_path, monkeypatch):
    """Cache -> targets -> decode -> write_case -> detections.csv -> evaluate gives AP 1.0 on 3D boxes."""
    monkeypatch.setattr("medsight.tasks.detection.BOOTSTRAP_SAMPLES", 20)
    _, ds = fresh
    plan = api.plan(ds, budget_minutes=1, quiet=True, measure=False)
    manifest = Manifest.load(ds)
    api.preprocess(ds, quiet=True)
    task = get_task("detection")
    data = CachedCases(cache_dir(ds, plan), [c.id for c in manifest.cases])
    from medsight.detection import decode_maps, nms_per_class

    rows = []
    for case in manifest.cases:
        props = data.props(case.id)
        lo = np.array([b["lo"] for b in props["boxes"]]).reshape(-1, 3)
        hi = np.array([b["hi"] for b in props["boxes"]]).reshape(-1, 3)
        back_lo, back_hi = network_to_original(lo, hi, props)  # 3D boxes follow the array axes
        np.testing.assert_allclose(np.concatenate([back_lo, back_hi], 1),
                                   np.array([b["box"] for b in case.boxes], float), atol=1e-6)
        target = task._render(lo, hi, np.zeros(len(lo), np.int64), props["network_shape"], plan)
        cand = decode_maps(*(torch.from_numpy(target[k]) for k in ("heatmap", "size", "offset")),
                           plan["detection"]["stride"], score_threshold=plan["detection"]["score_threshold"])
        cand = nms_per_class(cand, plan["detection"]["nms_iou"])
        assert (cand["scores"] == 1.0).sum() == len(lo)
        rows += task.write_case({"case": case.id, "prediction": cand, "props": props}, tmp_path, plan, {})
    task.write_summary(rows, tmp_path, plan, {})
    metrics = task.evaluate(tmp_path, manifest)
    assert metrics["num_cases"] == 3
    assert metrics["per_class"]["tumour"]["ap50"] == pytest.approx(1.0)
    assert metrics["per_class"]["tumour"]["cpm"] == pytest.approx(1.0)


def test_train_predict_evaluate_3d_boxes_in_voxel_indices(fresh, tmp_path, monkeypatch):
    monkeypatch.setattr("medsight.tasks.detection.BOOTSTRAP_SAMPLES", 20)
    _, ds = fresh
    shrink_plan(ds, epochs=2)
    plan = load_plan(ds)
    run = api.train(ds, fold=0, quiet=True, threads=1)
    log = [json.loads(line) for line in (run / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["train_loss"]) for r in log)
    out = api.predict(run, [ds], tmp_path / "out", quiet=True, threads=1)
    with open(out / "detections.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["case", "label", "score", "x0", "y0", "z0", "x1", "y1", "z1"]
    assert {r["case"] for r in rows} == {c.id for c in Manifest.load(ds).cases}
    assert {r["label"] for r in rows} == {"tumour"}
    box = np.array([[float(r[c]) for c in ("x0", "y0", "z0", "x1", "y1", "z1")] for r in rows])
    assert box.min() >= 0 and np.all(box[:, 3:] <= np.array(CROP)) and np.all(box[:, 3:] >= box[:, :3])
    assert len(rows) <= 3 * plan["detection"]["max_detections"]
    metrics = api.evaluate(out, ds, quiet=True)
    assert metrics["num_cases"] == 3 and set(metrics["per_class"]) == {"tumour"}
    assert 0.0 <= metrics["summary"]["ap50"]["value"] <= 1.0


class _PooledMaps(torch.nn.Module):
    """A translation-equivariant stand-in for a detector: every output map is the input averaged per cell."""

    def __init__(self, channels_out: int, stride: int):
        super().__init__()
        self.channels_out, self.stride = channels_out, stride

    def forward(self, x):
        pooled = torch.nn.functional.avg_pool3d(x[:, :1], self.stride)
        return pooled.repeat(1, self.channels_out, 1, 1, 1)


def test_sliding_windows_land_on_the_cell_grid(brats_boxes):
    """Windows of a patch-trained plan, blended at cell resolution, give the maps of one whole-image pass
    for a model whose output at a cell depends on that cell only (so any misplaced window would show)."""
    src, _ = brats_boxes
    case = sorted(p for p in src.iterdir())[0]
    flair = np.asarray(__import__("nibabel").load(case / "Flair_subtrMeanDivStd.nii.gz").dataobj, np.float32)
    image = np.stack([flair, flair])[:, :40, :36, :24]  # (C, 40, 36, 24): not a multiple of the window
    task = get_task("detection")
    plan = {"dims": 3, "labels": {"0": "background", "1": "tumour"}, "whole_image": False, "patch_size": [16, 16, 16],
            "detection": {"stride": [4, 4, 4]}, "inference": {"mirror_axes": [], "overlap": 0.3, "batch_size": 3}}
    model = _PooledMaps(1 + 6, 4)
    assert task._uses_windows(image, plan)
    heat, size, offset = task._windowed_maps([model], image, plan, torch.device("cpu"))
    whole_heat, whole_size, whole_offset = task._dense_maps([model], torch.from_numpy(image[None]), plan)
    assert heat.shape == whole_heat.shape == (1, 1, 10, 9, 6)
    torch.testing.assert_close(heat, whole_heat, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(size, whole_size, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(offset, whole_offset, rtol=1e-5, atol=1e-6)
