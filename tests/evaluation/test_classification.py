"""Classification metrics against hand-computed values, sklearn, and a slow DeLong written out."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medsight.errors import InputError
from medsight.evaluation.bootstrap import bootstrap_distribution
from medsight.evaluation.classification import (
    choose_threshold,
    classification_metrics,
    delong_test,
    expected_calibration_error,
    reliability_curve,
    roc_auc,
    roc_curve_points,
)


def _binary(p_pos):
    p_pos = np.asarray(p_pos, float)
    return np.stack([1 - p_pos, p_pos], axis=1)


def test_binary_auc_by_hand_and_ties():
    assert roc_auc(np.array([0, 0, 1, 1]), _binary([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_multiclass_auc_is_one_vs_rest_macro_like_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert roc_auc(y, probs) == pytest.approx(expected, abs=1e-12)


def test_binary_metrics_by_hand_with_and_without_threshold():
    y = np.array([0, 0, 0, 1])
    probs = _binary([0.2, 0.6, 0.1, 0.7])
    m = classification_metrics(y, probs)  # argmax: predictions 0, 1, 0, 1
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[2, 1], [0, 1]]
    assert m["sensitivity"] == 1.0 and m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["per_class_accuracy"] == pytest.approx([2 / 3, 1.0])
    assert m["auc"] == pytest.approx(1.0)
    strict = classification_metrics(y, probs, threshold=0.65)
    assert strict["accuracy"] == 1.0 and strict["specificity"] == 1.0 and strict["threshold"] == 0.65


def test_single_class_gives_none_not_nan():
    m = classification_metrics(np.array([1, 1, 1]), _binary([0.9, 0.2, 0.6]))
    assert m["auc"] is None
    assert m["per_class_accuracy"][0] is None and m["specificity"] is None
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)


def test_quadratic_kappa_by_hand():
    # y = 0,1,2; predicted 0,2,2 -> observed weighted disagreement 1/4, expected 15/12 -> kappa 0.8
    probs = np.eye(3)[[0, 2, 2]]
    m = classification_metrics(np.array([0, 1, 2]), probs, ordinal=True)
    assert m["quadratic_kappa"] == pytest.approx(0.8)
    assert "quadratic_kappa" not in classification_metrics(np.array([0, 1, 2]), probs)


def test_ece_and_reliability_by_hand():
    y = np.array([1, 0, 0, 1])
    probs = _binary([0.9, 0.9, 0.3, 0.7])  # confidences 0.9 (right), 0.9 (wrong), 0.7, 0.7 (right)
    assert expected_calibration_error(y, probs) == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    curve = reliability_curve(y, probs, n_bins=15)
    np.testing.assert_allclose(curve["confidence"], [0.7, 0.9])
    np.testing.assert_allclose(curve["accuracy"], [1.0, 0.5])
    np.testing.assert_array_equal(curve["count"], [2, 2])
    np.testing.assert_allclose(curve["bin_lower"], [10 / 15, 13 / 15])
    assert classification_metrics(y, probs)["ece"] == pytest.approx(0.35)


def test_choose_threshold_rules_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.4, 0.7, 0.9])
    assert choose_threshold(y, p, "youden") == pytest.approx(0.7)  # J = 2/3
    assert choose_threshold(y, p, "f1") == pytest.approx(0.4)  # F1 = 6/7
    with pytest.raises(InputError):
        choose_threshold(y, p, "magic")


def test_roc_curve_points_start_at_origin_and_end_at_one():
    points = roc_curve_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert points["fpr"][0] == 0 and points["tpr"][0] == 0
    assert points["fpr"][-1] == 1 and points["tpr"][-1] == 1
    assert np.isinf(points["thresholds"][0])


def test_delong_by_hand():
    # A: positives 0.9, 0.6 / negatives 0.7, 0.2 -> AUC 0.75, placements (1, .5) and (.5, 1): var 0.125
    # B: separates perfectly -> AUC 1, variance 0; z = -0.25 / sqrt(0.125)
    y = np.array([1, 1, 0, 0])
    auc_a, auc_b, z, p = delong_test(y, np.array([0.9, 0.6, 0.7, 0.2]), np.array([0.8, 0.9, 0.1, 0.3]))
    assert (auc_a, auc_b) == pytest.approx((0.75, 1.0))
    assert z == pytest.approx(-0.25 / np.sqrt(0.125))
    assert p == pytest.approx(2 * stats.norm.sf(0.25 / np.sqrt(0.125)))


def _slow_delong_z(y, a, b):
    """DeLong (1988) written out with the O(m n) kernel, as an independent check."""
    def placements(scores):
        pos, neg = scores[y == 1], scores[y == 0]
        kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return kernel.mean(), kernel.mean(axis=1), kernel.mean(axis=0)

    auc_a, v10_a, v01_a = placements(a)
    auc_b, v10_b, v01_b = placements(b)
    m, n = v10_a.size, v01_a.size
    s10 = np.cov(np.stack([v10_a, v10_b]))
    s01 = np.cov(np.stack([v01_a, v01_b]))
    s = s10 / m + s01 / n
    return (auc_a - auc_b) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def test_delong_fast_matches_slow_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    a = np.round(y * 0.8 + rng.normal(size=150), 1)  # rounding makes ties
    b = np.round(y * 0.5 + 0.5 * a + rng.normal(size=150), 1)
    _, _, z, _ = delong_test(y, a, b)
    assert z == pytest.approx(_slow_delong_z(y, a, b), rel=1e-10)


def test_delong_standard_error_agrees_with_paired_bootstrap():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], 200)
    shared = rng.normal(size=400)
    a = y * 1.0 + shared + 0.5 * rng.normal(size=400)
    b = y * 0.7 + shared + 0.5 * rng.normal(size=400)
    auc_a, auc_b, z, _ = delong_test(y, a, b)
    delong_se = (auc_a - auc_b) / z
    def auc_difference(yy, aa, bb):
        return roc_auc(yy, aa) - roc_auc(yy, bb)

    differences = bootstrap_distribution(auc_difference, y, a, b, n_boot=600, stratify=y)
    assert differences.std() == pytest.approx(delong_se, rel=0.15)


def test_identical_scores_give_p_one():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.8, 0.3, 0.6, 0.4, 0.5])
    assert delong_test(y, s, s)[2:] == (0.0, 1.0)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="labels"):
        classification_metrics(np.array([0, 3]), _binary([0.1, 0.2]))
    with pytest.raises(InputError, match="match"):
        classification_metrics(np.array([0, 1, 1]), _binary([0.1, 0.2]))
    with pytest.raises(InputError, match="binary"):
        classification_metrics(np.array([0, 1, 2]), np.eye(3), threshold=0.5)
