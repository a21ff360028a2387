"""Detection metrics against hand-computed IoU, AP and FROC values."""
from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import InputError
from medsight.evaluation.bootstrap import bootstrap_ci, detection_bootstrap_ci
from medsight.evaluation.detection import (
    COCO_THRESHOLDS,
    ap_from_matches,
    average_precision,
    box_iou,
    coco_map,
    detection_metrics,
    froc,
    match_images,
)


def test_box_iou_2d_by_hand():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]])
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 0, 4]])  # overlapping, disjoint, degenerate
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[1, 0] == 0.0 and iou[0, 1] == 0.0 and iou[0, 2] == 0.0
    assert box_iou(a, np.zeros((0, 4))).shape == (2, 0)


def test_box_iou_3d_by_hand():
    a = np.array([[0, 0, 0, 2, 2, 2]])  # volume 8
    b = np.array([[1, 0, 0, 3, 2, 1]])  # volume 4, overlap 1 x 2 x 1 = 2
    assert box_iou(a, b)[0, 0] == pytest.approx(2 / (8 + 4 - 2))


def _three_gt_case():
    """Image 0: gts G1, G2; image 1: gt G3. Ranked: 0.9 hit G1, 0.8 duplicate of G1, 0.7 hit G3, 0.6 miss."""
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 10, 10]])]
    dets = [
        (np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.8, 0.6])),
        (np.array([[0, 0, 10, 9]]), np.array([0.7])),
    ]
    return dets, gts


def test_average_precision_all_point_by_hand_duplicate_is_false_positive():
    dets, gts = _three_gt_case()
    result = average_precision(dets, gts, iou_threshold=0.5)
    # precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3; envelope 1, 2/3, 2/3, 1/2
    np.testing.assert_allclose(result["precision"], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(result["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert result["ap"] == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)


def test_average_precision_101_point_by_hand():
    dets, gts = _three_gt_case()
    # recall levels 0..0.33 (34) -> 1; 0.34..0.66 (33) -> 2/3; 0.67..1 (34) -> 0
    ap = average_precision(dets, gts, method="101_point")["ap"]
    assert ap == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)


def test_tied_scores_enter_together_so_image_order_does_not_matter():
    gts = [np.array([[0, 0, 4, 4]]), np.zeros((0, 4))]
    dets = [(np.array([[0, 0, 4, 4]]), np.array([0.5])), (np.array([[9, 9, 12, 12]]), np.array([0.5]))]
    # one operating point: 1 hit, 1 false positive -> precision 1/2 at recall 1
    assert average_precision(dets, gts)["ap"] == pytest.approx(0.5)
    assert average_precision(dets[::-1], gts[::-1])["ap"] == pytest.approx(0.5)


def test_greedy_matching_takes_best_unmatched_gt():
    gts = [np.array([[0, 0, 10, 10], [4, 0, 14, 10]])]
    # the top detection overlaps the second gt most (IoU 0.82 vs 0.54); the next one then takes the first;
    # had it taken the first gt (the first above 0.5), the second detection would be a false positive
    dets = [(np.array([[3, 0, 13, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]))]
    assert average_precision(dets, gts)["ap"] == pytest.approx(1.0)


def test_coco_map_averages_over_iou_thresholds():
    gts = [np.array([[0, 0, 10, 10]])]
    dets = [(np.array([[0, 0, 10, 7.2]]), np.array([0.5]))]  # IoU 0.72: a hit at 0.50..0.70 only
    result = coco_map(dets, gts)
    assert result["ap_per_threshold"] == pytest.approx([1.0] * 5 + [0.0] * 5)
    assert result["map"] == pytest.approx(0.5)


def test_ap_without_ground_truth_is_none_and_without_detections_is_zero():
    assert average_precision([(np.zeros((1, 4)), np.array([0.3]))], [np.zeros((0, 4))])["ap"] is None
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], [np.array([[0, 0, 1, 1]])])["ap"] == 0.0


def test_froc_by_hand_duplicates_ignored():
    dets, gts = _three_gt_case()
    # add, in image 1, a gt hit at 0.3 and a false positive at 0.65
    gts[1] = np.vstack([gts[1], [[40, 40, 50, 50]]])
    dets[1] = (np.vstack([dets[1][0], [[40, 40, 50, 50], [80, 80, 90, 90]]]), np.array([0.7, 0.3, 0.65]))
    # 4 lesions in 2 images; counted in score order: .9 H, (.8 duplicate ignored), .7 H, .65 F, .6 F, .3 H
    result = froc(dets, gts)
    curve = result["curve"]
    np.testing.assert_allclose(curve["fps_per_image"], [0, 0, 0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(curve["sensitivity"], [0, 1 / 4, 2 / 4, 2 / 4, 2 / 4, 3 / 4])
    expected = [0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75]
    assert result["sensitivities"] == pytest.approx(expected)
    assert result["cpm"] == pytest.approx(np.mean(expected))


def test_froc_tied_scores_enter_together():
    gts = [np.array([[0, 0, 4, 4]]), np.zeros((0, 4))]
    dets = [(np.array([[0, 0, 4, 4]]), np.array([0.5])), (np.array([[9, 9, 12, 12]]), np.array([0.5]))]
    result = froc(dets, gts, fp_rates=(0.25, 0.5))
    # the hit cannot be taken without the tied false positive (0.5 per image)
    assert result["sensitivities"] == [0.0, 1.0]


def test_froc_center_matching():
    gts = [np.array([[0, 0, 10, 10]])]
    inside = (np.array([[6, 6, 20, 20]]), np.array([0.9]))  # centre (13, 13): outside the gt box
    near = (np.array([[2, 2, 8, 8]]), np.array([0.9]))  # centre (5, 5): inside, IoU only 0.36
    assert froc([inside], gts, match="center")["cpm"] == 0.0
    assert froc([near], gts, match="center")["cpm"] == 1.0
    assert froc([near], gts, match="iou")["cpm"] == 0.0
    assert froc([inside], gts, match="center", center_distance=12.0)["cpm"] == 1.0  # 8 * sqrt(2) < 12


def test_3d_average_precision():
    gts = [np.array([[0, 0, 0, 4, 4, 4]])]
    dets = [(np.array([[0, 0, 0, 4, 4, 3], [0, 0, 0, 2, 2, 2]]), np.array([0.4, 0.9]))]
    # 0.9: IoU 8/64 -> FP; 0.4: IoU 48/64 -> hit. precision 0, 1/2 at recall 0, 1 -> AP 1/2
    assert average_precision(dets, gts)["ap"] == pytest.approx(0.5)


def test_detection_metrics_per_class_and_mean():
    class_names = ["RBC", "WBC", "Platelets"]
    gts = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array(["RBC", "WBC"]))]
    dets = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.8]), np.array([0, 2]))]
    result = detection_metrics(dets, gts, class_names)
    assert result["RBC"]["ap50"] == 1.0 and result["WBC"]["ap50"] == 0.0
    assert result["Platelets"]["ap50"] is None and result["Platelets"]["n_detections"] == 1
    assert result["mean"]["ap50"] == pytest.approx(0.5)
    assert result["RBC"]["cpm"] == 1.0


def test_bootstrap_over_images():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for _ in range(30):
        box = np.array([[0, 0, 10, 10]])
        shift = rng.uniform(0, 6)
        gts.append(box)
        dets.append((box + np.array([shift, 0, shift, 0]), np.array([rng.uniform()])))
    point, low, high = bootstrap_ci(lambda d, g: average_precision(d, g)["ap"], dets, gts, n_boot=200)
    assert low <= point <= high and low < high
    assert 0.0 < point < 1.0


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="images"):
        average_precision([], [np.zeros((0, 4))])
    with pytest.raises(InputError, match="scores"):
        average_precision([(np.zeros((2, 4)), np.array([0.1]))], [np.zeros((0, 4))])
    with pytest.raises(InputError, match="shape"):
        box_iou(np.zeros((2, 5)), np.zeros((1, 4)))
    with pytest.raises(InputError, match="unknown class"):
        detection_metrics([(np.zeros((1, 4)), np.array([0.1]), np.array(["cat"]))], [(np.zeros((0, 4)), [])], ["dog"])


def _random_detection_set(n_images=25, seed=0):
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(n_images):
        corners = rng.uniform(0, 100, (rng.integers(0, 4), 2))
        gt = np.hstack([corners, corners + 10])
        noisy = gt + rng.normal(0, 2.5, gt.shape)
        extra = rng.uniform(0, 100, (rng.integers(0, 4), 2))
        boxes = np.vstack([noisy, noisy[:1], np.hstack([extra, extra + 10])])
        dets.append((boxes, np.round(rng.uniform(size=len(boxes)), 1)))  # rounded: tied scores
        gts.append(gt)
    return dets, gts


@pytest.mark.parametrize("statistic", ["ap", "map", "cpm"])
def test_fast_image_bootstrap_equals_resampling_the_image_lists(statistic):
    dets, gts = _random_detection_set()
    generic = {
        "ap": lambda d, g: average_precision(d, g)["ap"],
        "map": lambda d, g: coco_map(d, g)["map"],
        "cpm": lambda d, g: froc(d, g)["cpm"],
    }[statistic]
    thresholds = COCO_THRESHOLDS if statistic == "map" else (0.5,)
    matches = match_images(dets, gts, thresholds, ignore_duplicates=statistic == "cpm")
    fast = detection_bootstrap_ci(matches, statistic, n_boot=60, seed=4)
    slow = bootstrap_ci(generic, dets, gts, n_boot=60, seed=4)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert fast[1] < fast[2]


def test_image_weights_equal_repeated_images():
    dets, gts = _random_detection_set(seed=2)
    weights = np.random.default_rng(0).integers(0, 3, len(gts))
    repeated = [i for i, w in enumerate(weights) for _ in range(w)]
    matches = match_images(dets, gts)
    for method in ("all_point", "101_point"):
        weighted = ap_from_matches(matches, method, image_weights=weights)["ap"]
        repeated_ap = average_precision([dets[i] for i in repeated], [gts[i] for i in repeated], method=method)["ap"]
        assert weighted == pytest.approx(repeated_ap)
