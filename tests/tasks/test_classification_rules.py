"""The exam-classification plan rules and inference on real MedMNIST samples: sizing, ensembles, test-time flips."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight import api
from medsight.classification.networks import MemberEnsemble
from medsight.datasets.manifest import Manifest
from medsight.planning.fingerprint import load_fingerprint
from medsight.tasks import get_task
from medsight.classification.sizing import PLANES_LADDER, WIDTH_LADDER
from medsight.tasks.classification import MAX_MEMBERS, TARGET_EPOCHS


def _adrenal_subset(path: Path, shared_data: Path, n_train: int = 24, n_val: int = 8) -> Path:
    with np.load(shared_data / "medmnist" / "adrenalmnist3d.npz") as z:
        np.savez(path, train_images=z["train_images"][:n_train], train_labels=z["train_labels"][:n_train],
                 val_images=z["val_images"][:n_val], val_labels=z["val_labels"][:n_val])
    return path


def test_2d_small_image_plan(tiny_breast):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    fresh = api.plan(tiny_breast, quiet=True, measure=False)
    net = fresh["network"]
    assert net["name"] == "small_resnet" and net["stem_stride"] == 1 and net["spatial_dims"] == 2
    assert fresh["input_size"] == [28, 28] and fresh["batch_size"] == 64
    assert fresh["test_time_augmentation"] == {"mirror_axes": [1]}
    assert fresh["loss"]["label_smoothing"] == 0.1
    assert fresh["optimizer"]["warmup_steps"] == math.ceil(48 / 64)  # one epoch of the 48 training cases
    assert 1 <= plan["network"]["members"] <= MAX_MEMBERS
    assert net["members"] == 1 and net["widths"] == list(WIDTH_LADDER[0])  # unmeasured: nothing timed
    assert plan["task"] == "classification"


def test_small_volumes_get_the_2_5d_network_and_a_small_budget_buys_one_narrow_member(tmp_path, shared_data):
    from medsight.classification.exam_networks import OrthogonalPlanesNet

    ds = tmp_path / "adrenal"
    api.import_dataset(_adrenal_subset(tmp_path / "a.npz", shared_data), ds, progress=False)
    manifest = Manifest.load(ds)
    fp = api.fingerprint(ds, progress=False)
    task = get_task("classification")
    tiny = task.plan_rules(manifest, fp, torch.device("cpu"), budget_minutes=0.01)
    assert tiny["network"]["name"] == "orthogonal_planes"
    assert tiny["network"]["features"] == list(PLANES_LADDER[0]) and tiny["network"]["members"] == 1
    assert isinstance(task.build_network(tiny), OrthogonalPlanesNet)
    two = task.build_network({**tiny, "network": {**tiny["network"], "members": 2}})
    assert isinstance(two, MemberEnsemble) and len(two.members) == 2
    assert tiny["test_time_augmentation"] == {"mirror_axes": [0, 1, 2]} and not tiny["channels_last"]
    assert tiny["augmentation"]["rotation"]
    assert load_fingerprint(ds)["median_shape"] == [28, 28, 28]


def test_budget_buys_members_then_width_then_members(tmp_path, shared_data, monkeypatch):
    """With a made-up timing (cost x4 per ladder step), the rule's choices can be computed by hand."""
    import medsight.classification.sizing as sizing

    ladder_cost = {w: 1e-3 * 4 ** i for i, w in enumerate(sizing.PLANES_LADDER)}
    monkeypatch.setattr(sizing, "planes_seconds_per_sample", lambda c, size, w, dev, batch=32: ladder_cost[tuple(w)])
    ds = tmp_path / "adrenal"
    api.import_dataset(_adrenal_subset(tmp_path / "a.npz", shared_data), ds, progress=False)
    manifest, fp, task = Manifest.load(ds), api.fingerprint(ds, progress=False), get_task("classification")
    usable = 60 * 0.9 / 1.15  # seconds of one budget minute that go to training steps (46.96 s)
    # 24 cases: an epoch costs 0.024, 0.096, 0.384 s for the three 2.5D widths; 3 members of 40 epochs = 120

    def network(minutes):
        net = task.plan_rules(manifest, fp, torch.device("cpu"), budget_minutes=minutes)["network"]
        return net["features"], net["members"]

    # 0.05 min = 2.35 s: 98 epochs of the narrowest (< 120) -> narrowest, 98 // 40 = 2 members
    assert network(0.05) == ([16, 32, 64], 2)
    # 0.1 min = 4.7 s: 196 epochs of the narrowest, 49 of the middle (< 120) -> narrowest, 4 members
    assert network(0.1) == ([16, 32, 64], 4)
    # 0.3 min = 14.1 s: 147 epochs of the middle width -> middle, 3 members
    assert network(0.3) == ([32, 64, 128], 3)
    # 1.5 min = 70.4 s: 183 epochs of the widest -> widest, 4 members; 30 min: capped at 5
    assert network(1.5) == ([64, 128, 256], int(1.5 * usable / (24 * 16e-3)) // TARGET_EPOCHS[3])
    assert network(30.0) == ([64, 128, 256], 5)


def test_test_time_flips_average_the_mirrored_predictions(tiny_breast):
    from medsight.classification.networks import small_resnet

    task = get_task("classification")
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["test_time_augmentation"] = {"mirror_axes": [1]}
    with np.load(str(tiny_breast.parent / "breast_small.npz")) as z:
        x = ((z["val_images"][:6].astype(np.float32) - 100) / 50)[:, None]
    torch.manual_seed(0)
    model = small_resnet(2, 1, 2, widths=(8, 8, 16, 16)).eval()
    with torch.no_grad():
        plain = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
        mirrored = torch.softmax(model(torch.from_numpy(x[..., ::-1].copy())), 1).numpy()
    tta = task._probabilities([model], x, plan, torch.device("cpu"))
    assert np.allclose(tta, (plain + mirrored) / 2, atol=1e-5)
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the flip matters for this model
    assert np.allclose(task._probabilities([model], x, plan, torch.device("cpu"), test_time_augmentation=False),
                       plain, atol=1e-5)


def test_member_ensemble_trains_predicts_and_exports(tiny_breast):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["network"]["members"] = 2
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    run = api.train(tiny_breast, quiet=True)
    info, p, task, models, _ = api.load_run(run, torch.device("cpu"))
    assert isinstance(models[0], MemberEnsemble)
    # on the CPU, where the members are run below (a GPU's float32 convolutions differ by ~1e-5)
    out = api.predict(run, [tiny_breast], run / "pred", quiet=True, device="cpu")
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 64 and list(rows[0]) == ["case", "label", "prob_0", "prob_1"]
    probs = np.array([[float(r["prob_0"]), float(r["prob_1"])] for r in rows])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # the written probability is the mean of the two members' (flip-averaged) probabilities
    from medsight.preprocessing.cache import CachedCases, cache_dir

    data = CachedCases(cache_dir(tiny_breast, p), ["val_0000"])
    x = data.image("val_0000", mmap=False)[None].astype(np.float32)
    members = [task._probabilities([m], x, p, torch.device("cpu"))[0] for m in models[0].members]
    row = next(r for r in rows if r["case"] == "val_0000")
    assert float(row["prob_1"]) == pytest.approx(float(np.mean([m[1] for m in members])), abs=2e-6)
    onnx_path = api.export(run, quiet=True)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = models[0](torch.from_numpy(x)).numpy()
    assert np.allclose(session.run(None, {"image": x})[0], expected, atol=1e-4)
