"""Classification metrics on labels and probabilities: AUC, accuracy, kappa, calibration, DeLong.

Conventions:

- ``y_true`` holds class indices 0..K-1; ``probs`` is (N, K) with one column per class (a 1-D
  ``probs`` is read as the positive-class probability of a binary problem). Class 1 is the
  positive class of a binary problem.
- A metric that is undefined on the data (AUC with one class present, recall of an absent class,
  kappa with no disagreement possible) is ``None`` in :func:`classification_metrics`; the bare
  functions (:func:`roc_auc`) raise ``ValueError`` instead, which :mod:`.bootstrap` skips.
- ECE uses ``n_bins`` equal-width bins of the top-label confidence, each bin ``(low, high]``
  (a confidence of exactly 0 goes to the first bin).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_curve

from medsight.errors import InputError


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, threshold: float | None = None, ordinal: bool = False
) -> dict[str, Any]:
    """AUC, accuracy, balanced accuracy, confusion matrix, per-class recall, ECE (+ sens/spec, kappa)."""
    y, p = _check_inputs(y_true, probs)
    n_classes = p.shape[1]
    predicted = predict_labels(p, threshold)
    matrix = confusion_matrix(y, predicted, labels=np.arange(n_classes))
    support = matrix.sum(axis=1)
    recalls = [float(matrix[k, k] / support[k]) if support[k] else None for k in range(n_classes)]
    defined_recalls = [r for r in recalls if r is not None]
    result: dict[str, Any] = {
        "n": int(y.size),
        "auc": _or_none(roc_auc, y, p),
        "accuracy": float(np.mean(predicted == y)),
        "balanced_accuracy": float(np.mean(defined_recalls)),
        "ece": expected_calibration_error(y, p),
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": recalls,
    }
    if n_classes == 2:
        result["threshold"] = None if threshold is None else float(threshold)  # None: argmax
        result["sensitivity"] = recalls[1]
        result["specificity"] = recalls[0]
    if ordinal:
        result["quadratic_kappa"] = quadratic_weighted_kappa(y, predicted, n_classes)
    return result


def predict_labels(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Argmax labels, or for a binary problem with a threshold: 1 where probs[:, 1] >= threshold."""
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if threshold is not None:
        if p.shape[1] != 2:
            raise InputError(f"a threshold applies to binary problems only, got {p.shape[1]} classes")
        return (p[:, 1] >= threshold).astype(int)
    return np.argmax(p, axis=1)


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUC on probs[:, 1] (or a 1-D score), else one-vs-rest macro AUC over classes present.

    Raises ``ValueError`` when fewer than two classes are present. Ties count one half.
    """
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        return _binary_auc(y == 1, p)
    if p.shape[1] == 2:
        return _binary_auc(y == 1, p[:, 1])
    present = np.unique(y)
    if present.size < 2:
        raise ValueError("AUC is undefined with one class present")
    return float(np.mean([_binary_auc(y == k, p[:, k]) for k in present]))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC from mid-ranks."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined with one class present")
    ranks = stats.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float | None:
    """Cohen's kappa with quadratic weights over classes 0..n_classes-1; None when undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = cohen_kappa_score(y_true, y_pred, labels=np.arange(n_classes), weights="quadratic")
    return float(kappa) if np.isfinite(kappa) else None


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of (bin share) * |accuracy - mean confidence|."""
    curve = reliability_curve(y_true, probs, n_bins)
    weights = curve["count"] / max(int(curve["count"].sum()), 1)
    return float(np.sum(weights * np.abs(curve["accuracy"] - curve["confidence"])))


def reliability_curve(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per non-empty confidence bin: bin_lower, bin_upper, mean confidence, accuracy and count."""
    y, p = _check_inputs(y_true, probs)
    confidence = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(bins, minlength=n_bins)
    confidence_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    used = count > 0
    return {
        "bin_lower": edges[:-1][used],
        "bin_upper": edges[1:][used],
        "confidence": confidence_sum[used] / count[used],
        "accuracy": correct_sum[used] / count[used],
        "count": count[used],
    }


def roc_curve_points(y_true: np.ndarray, p_pos: np.ndarray) -> dict[str, np.ndarray]:
    """ROC points (fpr, tpr, thresholds) of a binary problem; thresholds[0] is inf (nothing positive)."""
    y = np.asarray(y_true).astype(int).ravel()
    fpr, tpr, thresholds = roc_curve(y, np.asarray(p_pos, dtype=float).ravel(), pos_label=1)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def choose_threshold(y_true: np.ndarray, p_pos: np.ndarray, rule: str = "youden") -> float:
    """Threshold on p_pos (predict positive when p >= t), chosen on validation data.

    ``rule``: ``"youden"`` maximises sensitivity + specificity - 1; ``"f1"`` maximises F1.
    Ties go to the highest threshold. The returned value is one of the observed scores.
    """
    y = np.asarray(y_true).astype(int).ravel()
    scores = np.asarray(p_pos, dtype=float).ravel()
    if np.unique(y).size < 2:
        raise InputError("choosing a threshold needs both classes in the validation data")
    fpr, tpr, thresholds = roc_curve(y, scores, pos_label=1, drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # drop the "nothing positive" point
    if rule == "youden":
        objective = tpr - fpr
    elif rule == "f1":
        n_pos = np.count_nonzero(y == 1)
        true_pos = tpr * n_pos
        false_pos = fpr * (y.size - n_pos)
        objective = 2 * true_pos / (true_pos + false_pos + n_pos)
    else:
        raise InputError(f"unknown threshold rule {rule!r}", fix='use "youden" or "f1"')
    return float(thresholds[int(np.argmax(objective))])


def delong_test(y_true: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> tuple[float, float, float, float]:
    """DeLong's test of two correlated AUCs on the same cases: (auc_a, auc_b, z, two-sided p-value).

    Uses the fast mid-rank algorithm of Sun & Xu (2014); identical score sets give z = 0, p = 1.
    """
    y = np.asarray(y_true).astype(int).ravel()
    positive = y == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < 2 or n_neg < 2:
        raise InputError("DeLong's test needs at least two positive and two negative cases")
    scores = np.stack([np.asarray(p_a, dtype=float).ravel(), np.asarray(p_b, dtype=float).ravel()])
    if scores.shape[1] != y.size:
        raise InputError(f"scores have {scores.shape[1]} cases but y_true has {y.size}")
    aucs, covariance = delong_covariance(scores[:, positive], scores[:, ~positive])
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = aucs[0] - aucs[1]
    if variance <= 1e-15:
        z = 0.0 if abs(difference) < 1e-12 else float(np.sign(difference) * np.inf)
    else:
        z = float(difference / np.sqrt(variance))
    p_value = float(2 * stats.norm.sf(abs(z)))
    return float(aucs[0]), float(aucs[1]), z, p_value


def delong_covariance(positive_scores: np.ndarray, negative_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (R,) and their DeLong covariance (R, R) from scores of R classifiers: (R, m) and (R, n)."""
    m = positive_scores.shape[1]
    n = negative_scores.shape[1]
    ranks_pos = stats.rankdata(positive_scores, axis=1)
    ranks_neg = stats.rankdata(negative_scores, axis=1)
    ranks_all = stats.rankdata(np.concatenate([positive_scores, negative_scores], axis=1), axis=1)
    aucs = (ranks_all[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    placements_pos = (ranks_all[:, :m] - ranks_pos) / n  # share of negatives below each positive
    placements_neg = 1.0 - (ranks_all[:, m:] - ranks_neg) / m  # share of positives above each negative
    covariance = np.atleast_2d(np.cov(placements_pos)) / m + np.atleast_2d(np.cov(placements_neg)) / n
    return aucs, covariance


def _or_none(function, *args) -> float | None:
    """function(*args), or None when it raises ValueError (metric undefined on this data)."""
    try:
        return function(*args)
    except ValueError:
        return None


def _check_inputs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities; return int labels (N,) and float probabilities (N, K)."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise InputError(
            f"probabilities of shape {p.shape} do not match {y.size} labels", fix="pass (N, K) probabilities"
        )
    if y.size == 0:
        raise InputError("no cases to evaluate")
    if not np.all(np.isfinite(p)):
        raise InputError("probabilities contain NaN or inf")
    if not np.all(np.equal(np.mod(y.astype(float), 1), 0)) or y.min() < 0 or y.max() >= p.shape[1]:
        raise InputError(
            f"labels must be class indices 0..{p.shape[1] - 1}, got values {np.unique(y)[:10].tolist()}",
            fix="map class names to indices in the order of the probability columns",
        )
    return y.astype(int), p
