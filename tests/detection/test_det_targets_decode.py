"""Heatmap rendering, decoding (a rendered target decodes to its boxes exactly) and NMS, hand-checked."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.detection import decode_maps, grid_shape, local_maxima, nms, nms_per_class, render_targets


def _decode(t: dict, stride, **kw) -> dict:
    return decode_maps(torch.from_numpy(t["heatmap"]), torch.from_numpy(t["size"]), torch.from_numpy(t["offset"]),
                       stride, **kw)


def test_heatmap_peak_sigma_and_class_channel_by_hand():
    # one box rows 10..30, columns 20..44 at stride 4: centre (20, 32) px = (5.0, 8.0) cells, size (5, 6) cells
    t = render_targets(np.array([[10.0, 20.0]]), np.array([[30.0, 44.0]]), np.array([1]), (16, 20), (4, 4), 2,
                       alpha=0.54, min_sigma=0.5)
    heat = t["heatmap"]
    assert heat.shape == (2, 16, 20) and heat[0].max() == 0.0
    assert heat[1, 5, 8] == 1.0 and (heat[1] == 1.0).sum() == 1
    sigma_row, sigma_col = 0.54 * 5 / 6, 0.54 * 6 / 6  # 0.45 -> floored to 0.5, and 0.54
    assert heat[1, 6, 8] == pytest.approx(math.exp(-1 / (2 * 0.5 ** 2)), rel=1e-6)
    assert heat[1, 5, 10] == pytest.approx(math.exp(-4 / (2 * sigma_col ** 2)), rel=1e-6)
    assert sigma_row < 0.5
    # regression targets: log size in cells everywhere the object owns, offset = centre - cell
    assert t["size"][:, 5, 8].tolist() == pytest.approx([math.log(5), math.log(6)])
    assert t["offset"][:, 5, 8].tolist() == pytest.approx([0.0, 0.0])
    # the neighbour's Gaussian exp(-1 / (2 * 0.54^2)) = 0.18 is under the 0.3 region: only the peak regresses
    assert t["weight"][0, 5, 9] == 0.0 and t["weight"].sum() == pytest.approx(1.0)


def test_dense_regression_region_and_weights_by_hand():
    # 40 x 40 px box at stride 4: 10 cells, sigma = 0.54 * 10 / 6 = 0.9; centre (6.5, 6.5) cells -> peak (6, 6)
    t = render_targets(np.array([[6.0, 6.0]]), np.array([[46.0, 46.0]]), np.array([0]), (16, 16), (4, 4), 1)
    g1 = math.exp(-1 / (2 * 0.9 ** 2))  # 0.54 >= 0.3: the 4-neighbours regress too
    assert t["heatmap"][0, 6, 7] == pytest.approx(g1, rel=1e-6)
    assert t["offset"][:, 6, 7].tolist() == pytest.approx([0.5, -0.5])  # centre 6.5 - cell 7
    assert t["offset"][:, 6, 6].tolist() == pytest.approx([0.5, 0.5])
    assert t["size"][:, 6, 7].tolist() == pytest.approx([math.log(10), math.log(10)])
    owned = t["weight"][0] > 0
    gauss = t["heatmap"][0]
    assert owned.sum() == (gauss >= 0.3).sum()
    assert t["weight"][0, 6, 7] / t["weight"][0, 6, 6] == pytest.approx(g1, rel=1e-5)
    assert t["weight"].sum() == pytest.approx(1.0)


def test_heatmap_keeps_the_maximum_of_two_objects_and_skips_outside_centres():
    lo = np.array([[0.0, 0.0], [4.0, 0.0], [100.0, 100.0]])
    hi = np.array([[16.0, 16.0], [20.0, 16.0], [120.0, 120.0]])  # the third centre lies outside the grid
    t = render_targets(lo, hi, np.array([0, 0, 0]), (8, 8), (4, 4), 1)
    assert (t["heatmap"][0] == 1.0).sum() == 2  # peaks at (2, 2) and (3, 2)
    assert t["heatmap"][0, 2, 2] == 1.0 and t["heatmap"][0, 3, 2] == 1.0
    assert t["weight"].sum() == pytest.approx(2.0, abs=0.35)  # shared cells go to one owner


@pytest.mark.parametrize("stride", [(4, 4), (2, 4)])
def test_decoding_a_rendered_target_gives_the_boxes_back_exactly_2d(stride):
    lo = np.array([[3.3, 5.0], [40.25, 60.5], [70.0, 10.0], [20.0, 90.0]])
    hi = lo + np.array([[10.0, 12.5], [30.0, 8.0], [7.75, 7.75], [50.0, 22.0]])
    labels = np.array([0, 1, 2, 1])
    grid = grid_shape((128, 128), stride)
    t = render_targets(lo, hi, labels, grid, stride, 3)
    out = _decode(t, stride, max_candidates=100, score_threshold=0.999)
    assert len(out["scores"]) == 4 and np.all(out["scores"] == 1.0)
    order = np.lexsort((out["boxes"][:, 1], out["boxes"][:, 0]))
    expected = np.concatenate([lo, hi], axis=1)
    exp_order = np.lexsort((expected[:, 1], expected[:, 0]))
    np.testing.assert_allclose(out["boxes"][order], expected[exp_order], atol=1e-5)
    assert out["classes"][order].tolist() == labels[exp_order].tolist()


def test_decoding_a_rendered_target_gives_the_boxes_back_exactly_3d():
    lo = np.array([[2.0, 4.5, 6.0], [20.0, 10.0, 3.0]])
    hi = np.array([[12.0, 14.5, 9.0], [29.0, 30.0, 11.0]])
    t = render_targets(lo, hi, np.array([0, 0]), (8, 8, 4), (4, 4, 4), 1)
    out = _decode(t, (4, 4, 4), score_threshold=0.999)
    got = out["boxes"][np.argsort(out["boxes"][:, 0])]
    np.testing.assert_allclose(got, np.concatenate([lo, hi], axis=1), atol=1e-5)


def test_local_maxima_and_thresholds_and_keep_best():
    heat = torch.zeros(1, 5, 5)
    heat[0, 1, 1], heat[0, 1, 2], heat[0, 4, 4] = 0.5, 0.3, 0.004
    peaks = local_maxima(heat)
    assert peaks[0, 1, 1] and not peaks[0, 1, 2] and peaks[0, 4, 4]
    zeros = torch.zeros(2, 5, 5)
    assert len(decode_maps(heat, zeros, zeros, (4, 4), score_threshold=0.01)["scores"]) == 1
    low = heat * 0.01
    assert len(decode_maps(low, zeros, zeros, (4, 4), score_threshold=0.01)["scores"]) == 0
    best = decode_maps(low, zeros, zeros, (4, 4), score_threshold=0.01, keep_best=True)
    assert best["scores"].tolist() == pytest.approx([0.005])
    # size 0 in log space = one cell (4 px) around centre (1 + 0) * 4
    np.testing.assert_allclose(best["boxes"], [[2.0, 2.0, 6.0, 6.0]])


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # IoU(0, 1) = 90 / 110 = 0.818; IoU(0, 3) = 50 / 100 = 0.5
    assert nms(boxes, scores, 0.6).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.45).tolist() == [0, 2]
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_per_class_never_suppresses_across_classes():
    cand = {"boxes": np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float),
            "scores": np.array([0.5, 0.9, 0.4]), "classes": np.array([0, 1, 0])}
    out = nms_per_class(cand, 0.5)
    assert out["scores"].tolist() == [0.9, 0.5] and out["classes"].tolist() == [1, 0]
