"""Detection through the whole flow on a real BCCD subset (8 train + 4 val images, Pascal VOC layout)."""
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
from medsight.tasks.detection import network_to_original, resolution_scale

from helpers import write_bccd_subset

WIDTH, HEIGHT = 640, 480


@pytest.fixture(scope="module")
def imported_subset(tmp_path_factory, shared_data) -> tuple[Path, Path]:
    """(VOC source, imported dataset) of the BCCD subset, planned without timing a step; made once."""
    root = tmp_path_factory.mktemp("bccd")
    src = write_bccd_subset(root / "voc", shared_data / "bccd")
    ds = root / "ds"
    api.import_dataset(src, ds, progress=False)
    api.plan(ds, quiet=True, measure=False)
    return src, ds


@pytest.fixture()
def bccd_subset(imported_subset, tmp_path) -> tuple[Path, Path]:
    """A fresh copy of the imported dataset (manifest, fingerprint, plan) for one test."""
    src, ds = imported_subset
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy, ignore=shutil.ignore_patterns("cache", "run"))
    return src, copy


def shrink(ds: Path, **edits) -> dict:
    """A quick plan: 1/8 resolution, 2-image batches, 2 steps, 2 epochs, the selective sampler on."""
    plan = load_plan(ds)
    plan.update({"target_spacing": [8.0, 8.0], "patch_size": [60, 80], "batch_size": 2, "steps_per_epoch": 2,
                 "epochs": 2, **edits})
    plan["validation"].update({"every": 1, "max_cases": 2})
    plan["sampler"]["selective"] = True
    (ds / "plan.json").write_text(json.dumps(plan, indent=1))
    return plan


def test_train_predict_evaluate_writes_boxes_in_original_pixels(bccd_subset, tmp_path, monkeypatch):
    monkeypatch.setattr("medsight.tasks.detection.BOOTSTRAP_SAMPLES", 100)
    src, ds = bccd_subset
    plan = shrink(ds)
    # one thread: small tensors gain nothing from two, and a busy machine makes two threads wait on each other
    run = api.train(ds, fold=0, quiet=True, threads=1)
    out = api.predict(run, [src / "JPEGImages"], tmp_path / "out", quiet=True, threads=1)
    with open(out / "detections.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["case", "label", "score", "x0", "y0", "x1", "y1"]
    assert {r["case"] for r in rows} == {p.stem for p in (src / "JPEGImages").iterdir()}  # every image has a row
    assert {r["label"] for r in rows} <= {"Platelets", "RBC", "WBC"}
    box = np.array([[float(r[c]) for c in ("x0", "y0", "x1", "y1")] for r in rows])
    assert box.min() >= 0 and box[:, [0, 2]].max() <= WIDTH and box[:, [1, 3]].max() <= HEIGHT
    assert np.all(box[:, 2] >= box[:, 0]) and np.all(box[:, 3] >= box[:, 1])
    scores = np.array([float(r["score"]) for r in rows])
    assert np.all((scores > 0) & (scores <= 1)) and len(rows) <= 12 * plan["detection"]["max_detections"]
    metrics = api.evaluate(out, ds, quiet=True)
    assert metrics["task"] == "detection" and metrics["num_cases"] == 12
    assert set(metrics["per_class"]) == {"Platelets", "RBC", "WBC"}
    for stat in ("ap50", "map_coco", "cpm"):
        value, (lo, hi) = metrics["summary"][stat]["value"], metrics["summary"][stat]["ci95"]
        assert 0.0 <= lo <= hi <= 1.0 and 0.0 <= value <= 1.0
    assert (ds / "run" / "fold_0" / "decisions.json").is_file()
    # the selective sampler recorded what each epoch saw (2 steps x 2 images), for an exact resume
    files = sorted((cache_dir(ds, plan) / "selective_sampling").glob("*_epoch*_rank0of1.json"))
    assert len(files) == 2 and all(len(json.loads(p.read_text())["losses"]) == 4 for p in files)


def test_rendered_ground_truth_decodes_to_the_boxes_with_ap_one(bccd_subset, tmp_path, monkeypatch):
    """Cache -> targets -> decode -> write_case -> detections.csv -> evaluate gives AP 1.0 (default resolution)."""
    monkeypatch.setattr("medsight.tasks.detection.BOOTSTRAP_SAMPLES", 50)
    _, ds = bccd_subset
    plan = load_plan(ds)
    manifest = Manifest.load(ds)
    api.preprocess(ds, quiet=True)
    task = get_task("detection")
    data = CachedCases(cache_dir(ds, plan), [c.id for c in manifest.cases])
    values = sorted(int(v) for v in plan["labels"])
    rows = []
    for case in manifest.cases:
        props = data.props(case.id)
        boxes = props["boxes"]
        lo = np.array([b["lo"] for b in boxes]).reshape(-1, 2)
        hi = np.array([b["hi"] for b in boxes]).reshape(-1, 2)
        # the cache's network-space boxes map back onto the file's boxes (x = column, y = row)
        back_lo, back_hi = network_to_original(lo, hi, props)
        np.testing.assert_allclose(np.concatenate([back_lo[:, ::-1], back_hi[:, ::-1]], 1),
                                   np.array([b["box"] for b in case.boxes], float), atol=1e-6)
        labels = np.array([values.index(b["label"]) for b in boxes])
        target = task._render(lo, hi, labels, props["network_shape"], plan)
        # a perfect network: heatmap probabilities, log sizes and offsets equal to the targets
        from medsight.detection import decode_maps, nms_per_class

        cand = decode_maps(*(torch.from_numpy(target[k]) for k in ("heatmap", "size", "offset")),
                           plan["detection"]["stride"], score_threshold=plan["detection"]["score_threshold"])
        cand = nms_per_class(cand, plan["detection"]["nms_iou"])
        assert (cand["scores"] == 1.0).sum() == len(boxes)  # one peak of 1 per object
        rows += task.write_case({"case": case.id, "prediction": cand, "props": props}, tmp_path, plan, {})
    task.write_summary(rows, tmp_path, plan, {})
    metrics = task.evaluate(tmp_path, manifest)
    assert metrics["num_cases"] == 12
    for name, m in metrics["per_class"].items():
        assert m["ap50"] == pytest.approx(1.0), name
        assert m["map_coco"] == pytest.approx(1.0, abs=1e-6), name
        assert m["cpm"] == pytest.approx(1.0), name


def test_resolution_rule_keeps_platelets_on_the_grid():
    # BCCD's fingerprint: platelets median 39 px, smallest 19 px; at stride 4, 5 cells -> 20 px -> 0.513 -> 1/2
    sizes = {"1": {"median": [39.0, 39.0], "min": [19.0, 23.0]}, "2": {"median": [105.0, 101.0], "min": [42.0, 39.0]}}
    assert resolution_scale(sizes, 4, "cpu") == 0.5
    assert resolution_scale(sizes, 4, "cuda") == 1.0  # 10 cells -> 40 px: no down-sampling
    assert resolution_scale({}, 4) == 1.0
    tiny = {"1": {"median": [12.0, 12.0], "min": [9.0, 9.0]}}
    assert resolution_scale(tiny, 4, "cpu") == 1.0  # never up-sampled


def test_resume_with_the_selective_sampler_equals_an_uninterrupted_run(bccd_subset, tmp_path, monkeypatch):
    """Cut after epoch 0's checkpoint, resume: the weights equal an uninterrupted run's (the sampler replays files)."""
    from medsight.tasks.detection import DetectionTask
    from medsight.training.checkpoint import load_checkpoint
    from medsight.training.loop import FINAL

    _, ds = bccd_subset
    plan = shrink(ds, epochs=2)
    plan["validation"]["every"] = 2  # validate after epoch 1 only (its call is where the cut happens)
    (ds / "plan.json").write_text(json.dumps(plan, indent=1))
    full = api.train(ds, fold=0, out=tmp_path / "full", quiet=True, threads=1, device="cpu")
    for p in (cache_dir(ds, plan) / "selective_sampling").iterdir():
        p.unlink()  # the cut run must write (and replay) its own loss files

    class Cut(Exception):
        pass

    def cut_at_validation(self, *args, **kwargs):
        raise Cut

    monkeypatch.setattr(DetectionTask, "validate", cut_at_validation)
    with pytest.raises(Cut):  # epoch 1 ends in validation, before its checkpoint: the latest is epoch 0's
        api.train(ds, fold=0, out=tmp_path / "cut", quiet=True, threads=1, device="cpu")
    monkeypatch.undo()
    cut = api.train(ds, fold=0, out=tmp_path / "cut", resume=True, quiet=True, threads=1,
                    device="cpu")
    a = load_checkpoint(full / "fold_0" / FINAL)["model"]
    b = load_checkpoint(cut / "fold_0" / FINAL)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
