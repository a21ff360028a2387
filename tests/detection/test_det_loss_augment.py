"""The detector's loss (focal + L1, per-image losses), box-aware augmentation, and the selective replay."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.detection import CenterNetLoss, render_targets, sample_patch
from medsight.detection.selective import SelectiveState
from medsight.losses import CenterNetFocalLoss
from medsight.sampling import SelectiveSampler


def _batch(n_images: int = 2) -> dict:
    t = [render_targets(np.array([[4.0 + 8 * i, 8.0]]), np.array([[20.0 + 8 * i, 28.0]]), np.array([i % 2]),
                        (12, 12), (4, 4), 2) for i in range(n_images)]
    return {k: torch.from_numpy(np.stack([x[k] for x in t])) for k in t[0]}


def test_focal_part_equals_centernet_focal_loss_and_perfect_regression_costs_nothing():
    target = _batch()
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 12, 12)
    output = torch.cat([logits, target["size"], target["offset"]], dim=1)  # regression exactly right
    loss = CenterNetLoss(2, 2)(output, target)
    assert float(loss) == pytest.approx(float(CenterNetFocalLoss()(logits, target["heatmap"])), rel=1e-6)
    assert target["image_losses"].shape == (2,)


def test_regression_error_adds_weighted_l1_per_object():
    target = _batch(1)
    logits = torch.full((1, 2, 12, 12), -20.0)
    logits[target["heatmap"] == 1] = 20.0  # a near-perfect heatmap: focal ~ 0
    output = torch.cat([logits, target["size"] + 0.5, target["offset"] - 0.25], dim=1)
    # each object's weights sum to 1: size error 0.5 x 2 axes + offset error 0.25 x 2 axes = 1.5
    loss = CenterNetLoss(2, 2, size_weight=1.0, offset_weight=1.0)(output, target)
    assert float(loss) == pytest.approx(1.5, abs=1e-3)
    loss_half = CenterNetLoss(2, 2, size_weight=0.5, offset_weight=2.0)(output, target)
    assert float(loss_half) == pytest.approx(0.5 + 1.0, abs=1e-3)


def test_patch_without_augmentation_is_the_image_and_mirroring_moves_boxes():
    image = np.zeros((1, 20, 30), np.float32)
    image[0, 2:6, 10:18] = 1.0  # a bright box rows [2, 6), columns [10, 18)
    lo, hi, lab = np.array([[2.0, 10.0]]), np.array([[6.0, 18.0]]), np.array([0])
    out, lo2, hi2, _ = sample_patch(image, lo, hi, lab, (20, 30), {}, np.random.default_rng(0))
    assert torch.equal(out, torch.from_numpy(image)) and lo2.tolist() == lo.tolist()
    seen = set()
    for seed in range(16):
        out, lo2, hi2, _ = sample_patch(image, lo, hi, lab, (20, 30), {"mirror_axes": [0, 1]},
                                        np.random.default_rng(seed))
        rows, cols = np.nonzero(out[0].numpy() > 0.5)
        # the bright pixels sit exactly where the moved box says
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (lo2[0, 0], hi2[0, 0], lo2[0, 1], hi2[0, 1])
        seen.add((lo2[0, 0], lo2[0, 1]))
    assert seen == {(2.0, 10.0), (14.0, 10.0), (2.0, 12.0), (14.0, 12.0)}  # all four mirrorings appear


def test_zoom_scales_boxes_and_the_content_follows():
    image = np.zeros((1, 40, 40), np.float32)
    image[0, 10:20, 12:32] = 1.0
    lo, hi = np.array([[10.0, 12.0]]), np.array([[20.0, 32.0]])
    for seed in range(3):  # zoom 0.5: the 20 x 20 image lands somewhere inside the 40 x 40 patch
        out, lo2, hi2, _ = sample_patch(image, lo, hi, np.array([0]), (40, 40), {"scale": [0.5, 0.5]},
                                        np.random.default_rng(seed))
        np.testing.assert_allclose(hi2 - lo2, [[5.0, 10.0]])
        r0, r1 = int(np.ceil(lo2[0, 0])) + 1, int(np.floor(hi2[0, 0])) - 1
        c0, c1 = int(np.ceil(lo2[0, 1])) + 1, int(np.floor(hi2[0, 1])) - 1
        assert float(out[0, r0:r1, c0:c1].min()) > 0.99  # inside the moved box: the bright square
        assert float(out.sum()) == pytest.approx(image.sum() * 0.25, rel=0.02)  # area scales by 0.5 x 0.5


def test_boxes_mostly_cut_away_are_dropped():
    image = np.zeros((1, 64, 64), np.float32)
    lo, hi = np.array([[0.0, 0.0], [30.0, 30.0]]), np.array([[10.0, 10.0], [40.0, 40.0]])
    # a 32 x 32 patch focused on box 1: box 0 would keep at most a sliver or nothing
    for seed in range(5):
        _, lo2, hi2, lab2 = sample_patch(image, lo, hi, np.array([0, 1]), (32, 32), {}, np.random.default_rng(seed),
                                         focus_box=1)
        assert 1 in lab2.tolist()
        assert np.all(lo2 >= 0) and np.all(hi2 <= 32)


def test_selective_replay_equals_updating_one_sampler(tmp_path):
    state = SelectiveState(tmp_path, "run", 5, uniform_share=0.2)
    direct = SelectiveSampler(5, uniform_share=0.2)
    history = [([0, 1, 2], [0.1, 2.0, 0.5]), ([2, 3, 4, 2], [1.0, 0.0, 3.0, 0.7])]
    for epoch, (idx, losses) in enumerate(history):
        state.record(epoch, idx, losses)
        direct.update(idx, losses)
    np.testing.assert_allclose(state.sampler(2).probabilities(), direct.probabilities())
    a = state.draw(2, 50, np.random.default_rng([0, 2]))
    b = state.draw(2, 50, np.random.default_rng([0, 2]))
    assert a.tolist() == b.tolist()
    # two ranks: epoch 0's items come from both files
    state2 = SelectiveState(tmp_path, "ddp", 5, uniform_share=0.0)
    state2.record(0, [0], [1.0], rank=0, world=2)
    state2.record(0, [1], [3.0], rank=1, world=2)
    # unseen items keep the initial weight 1: weights (1, 3, 1, 1, 1)
    np.testing.assert_allclose(state2.sampler(1, world=2).probabilities(), np.array([1, 3, 1, 1, 1]) / 7)
    with pytest.warns(UserWarning, match="missing"):
        SelectiveState(tmp_path, "none", 5).sampler(1)


def test_an_image_without_boxes_trains_as_a_negative():
    image = np.random.default_rng(0).normal(size=(3, 32, 48)).astype(np.float32)
    out, lo, hi, lab = sample_patch(image, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64), (32, 48),
                                    {"scale": [0.8, 1.25], "mirror_axes": [0, 1]}, np.random.default_rng(1))
    assert tuple(out.shape) == (3, 32, 48) and lo.shape == (0, 2) and lab.shape == (0,)
    t = render_targets(lo, hi, lab, (8, 12), (4, 4), 3)
    assert all(float(np.abs(v).sum()) == 0.0 for v in t.values())
    target = {k: torch.from_numpy(v[None]) for k, v in t.items()}
    logits = torch.zeros(1, 3, 8, 12)
    loss = CenterNetLoss(3, 2)(torch.cat([logits, torch.zeros(1, 4, 8, 12)], 1), target)
    # every cell is a negative: -(0.5^2) log(0.5) per cell and class, divided by max(positives, 1) = 1
    assert float(loss) == pytest.approx(3 * 8 * 12 * 0.25 * np.log(2), rel=1e-5)


def test_a_patch_of_a_large_image_samples_exactly_where_its_box_says():
    # a linear image (value = 1000 row + column) is reproduced exactly by bilinear sampling
    rows, cols = np.meshgrid(np.arange(200.0), np.arange(220.0), indexing="ij")
    image = (1000 * rows + cols)[None].astype(np.float64)
    lo, hi = np.array([[100.0, 120.0]]), np.array([[101.0, 121.0]])  # a 1-pixel box: never cut at zoom 1.25
    for seed in range(3):
        out, lo2, hi2, _ = sample_patch(image, lo, hi, np.array([0]), (48, 64), {"scale": [1.25, 1.25]},
                                        np.random.default_rng(seed), focus_box=0)
        np.testing.assert_allclose(hi2 - lo2, [[1.25, 1.25]])
        # output pixel centre p + 0.5 reads input position lo + (p + 0.5 - lo2) / zoom
        r = lo[0, 0] + (np.arange(48) + 0.5 - lo2[0, 0]) / 1.25
        c = lo[0, 1] + (np.arange(64) + 0.5 - lo2[0, 1]) / 1.25
        # pixel i spans [i, i + 1): its value sits at its centre i + 0.5
        expected = 1000 * (r[:, None] - 0.5) + (c[None, :] - 0.5)
        inside = (r[:, None] >= 0.5) & (r[:, None] <= 199.5) & (c[None, :] >= 0.5) & (c[None, :] <= 219.5)
        np.testing.assert_allclose(out[0].numpy()[inside], expected[inside], rtol=1e-5)
