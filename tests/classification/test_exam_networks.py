"""Volumes through 2D views: slice exams with attention pooling and 2.5D orthogonal planes, on real AdrenalMNIST3D."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight import api
from medsight.classification.exam_networks import central_planes, orthogonal_planes, slice_attention


def test_central_planes_hand_checked():
    x = torch.arange(3 * 4 * 5, dtype=torch.float32).view(1, 1, 3, 4, 5)
    assert central_planes(x).shape == (1, 3, 1, 5, 5)  # 4x5, 3x5 and 3x4 planes resized to 5x5
    assert torch.allclose(central_planes(torch.ones(2, 1, 6, 6, 6)), torch.ones(2, 3, 1, 6, 6))
    cube = torch.zeros(1, 1, 5, 5, 5)
    cube[0, 0, 2, 1, 3] = 1.0  # on the first plane (axis 0 = 2) only
    p = central_planes(cube)
    assert p[0, 0, 0, 1, 3] == 1 and p[0, 1].sum() == 0 and p[0, 2].sum() == 0


def test_slice_attention_weights_sum_to_one_and_follow_the_slices():
    torch.manual_seed(0)
    net = slice_attention(in_channels=1, num_classes=2, widths=(4, 4, 8, 8), axis=2).eval()
    x = torch.randn(3, 1, 5, 6, 7)
    with torch.no_grad():
        w = net.attention(x)
        assert w.shape == (3, 7) and torch.allclose(w.sum(1), torch.ones(3), atol=1e-6)
        # permuting the slices permutes their weights and leaves the prediction unchanged (a set, not a sequence)
        perm = torch.randperm(7)
        assert torch.allclose(net.attention(x[..., perm]), w[:, perm], atol=1e-5)
        assert torch.allclose(net(x[..., perm]), net(x), atol=1e-5)
    with pytest.raises(ValueError):
        slice_attention(1, 2, axis=3)
    with pytest.raises(ValueError):
        orthogonal_planes(1, 2, spatial_dims=2)


@pytest.mark.parametrize("network", [
    {"name": "slice_attention", "in_channels": 1, "num_classes": 2, "widths": [4, 8, 8, 16]},
    {"name": "orthogonal_planes", "in_channels": 1, "num_classes": 2, "features": [4, 8]},
])
def test_a_plan_switches_a_volume_to_2d_views(network, tmp_path, shared_data):
    with np.load(shared_data / "medmnist" / "adrenalmnist3d.npz") as z:
        np.savez(tmp_path / "a.npz", train_images=z["train_images"][:16], train_labels=z["train_labels"][:16],
                 val_images=z["val_images"][:6], val_labels=z["val_labels"][:6])
    ds = tmp_path / "ds"
    api.import_dataset(tmp_path / "a.npz", ds, progress=False)
    plan = api.plan(ds, budget_minutes=0.1, quiet=True, measure=False)
    plan.update(network=network, epochs=1, batch_size=8, steps_per_epoch=2)
    (ds / "plan.json").write_text(json.dumps(plan))
    run = api.train(ds, quiet=True)
    out = api.predict(run, [ds], tmp_path / "pred", quiet=True)
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "case,label,prob_0,prob_1" and len(rows) == 23
