"""Detection metrics for 2D and 3D boxes: IoU, AP (VOC and COCO), FROC, per-class summaries.

Conventions:

- Boxes are rows ``x0, y0, x1, y1`` (2D) or ``x0, y0, z0, x1, y1, z1`` (3D) in continuous
  coordinates: a box's area is ``(x1 - x0) * (y1 - y0)`` (times ``z1 - z0`` in 3D), so a box covering
  pixel columns 3..5 inclusive is ``x0 = 3, x1 = 6``. Degenerate boxes have zero area and IoU 0.
- ``detections`` is one ``(boxes (N, 2d), scores (N,))`` pair per image; ``ground_truth`` is one
  ``(M, 2d)`` box array per image, in the same image order.
- Matching is per image, greedy by descending score (equal scores keep their input order): each
  detection takes the still-unmatched ground-truth box it overlaps most (IoU >= threshold), as
  COCO does; each ground-truth box is matched at most once, so duplicates are false positives.
- AP: ``"all_point"`` is VOC 2010+ (area under the precision envelope at every recall step);
  ``"101_point"`` is COCO's (mean envelope precision at recall 0, 0.01, ..., 1). Operating points
  are score thresholds: detections with equal scores enter together, so AP does not depend on the
  order of the images (VOC/COCO code breaks such ties by input order; without ties both agree).
- FROC: a detection that hits an already found lesion is ignored (neither hit nor false positive),
  as LUNA16 and CAMELYON16 score it; operating points are score thresholds, so tied scores enter
  together. The sensitivity at a rate r is the best one reached with at most r false positives per
  image (0 when none is). CPM is the mean over the rates.
- A class with no ground-truth box has an undefined AP/sensitivity: ``None``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from medsight.errors import InputError

COCO_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
FROC_RATES = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)
PerImageDetections = Sequence[tuple[np.ndarray, np.ndarray]]
PerImageBoxes = Sequence[np.ndarray]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (Na, Nb) of 2D (N, 4) or 3D (N, 6) boxes in continuous coordinates."""
    a = _as_boxes(boxes_a)
    b = _as_boxes(boxes_b)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    if a.shape[1] != b.shape[1]:
        raise InputError(f"cannot compare {a.shape[1] // 2}D boxes with {b.shape[1] // 2}D boxes")
    nd = a.shape[1] // 2
    low = np.maximum(a[:, None, :nd], b[None, :, :nd])
    high = np.minimum(a[:, None, nd:], b[None, :, nd:])
    intersection = np.prod(np.clip(high - low, 0, None), axis=2)
    union = box_volume(a)[:, None] + box_volume(b)[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def box_volume(boxes: np.ndarray) -> np.ndarray:
    """Area (2D) or volume (3D) of each box; 0 for degenerate boxes."""
    b = _as_boxes(boxes)
    nd = b.shape[1] // 2
    return np.prod(np.clip(b[:, nd:] - b[:, :nd], 0, None), axis=1)


def average_precision(
    detections: PerImageDetections,
    ground_truth: PerImageBoxes,
    iou_threshold: float = 0.5,
    method: str = "all_point",
) -> dict[str, Any]:
    """AP at one IoU threshold with its precision and recall curves (ap None when there is no gt box)."""
    return ap_from_matches(match_images(detections, ground_truth, [iou_threshold]), method)


def coco_map(
    detections: PerImageDetections,
    ground_truth: PerImageBoxes,
    thresholds: Sequence[float] = COCO_THRESHOLDS,
    method: str = "101_point",
) -> dict[str, Any]:
    """Mean AP over IoU thresholds (COCO's 0.50:0.95, 101-point by default) and AP per threshold."""
    result = map_from_matches(match_images(detections, ground_truth, thresholds), method)
    return {
        "map": result["map"],
        "thresholds": [float(t) for t in thresholds],
        "ap_per_threshold": result["ap_per_threshold"],
    }


def froc(
    detections: PerImageDetections,
    ground_truth: PerImageBoxes,
    fp_rates: Sequence[float] = FROC_RATES,
    match: str = "iou",
    iou_threshold: float = 0.5,
    center_distance: float | None = None,
) -> dict[str, Any]:
    """FROC: sensitivity at each false-positive rate per image, CPM (their mean), and the curve.

    ``match="iou"``: a detection hits a lesion when IoU >= ``iou_threshold``. ``match="center"``:
    when the detection's centre lies within ``center_distance`` of the lesion's centre (in box
    units), or inside the lesion's box when ``center_distance`` is None.
    """
    matches = match_images(detections, ground_truth, [iou_threshold], match, center_distance, ignore_duplicates=True)
    return froc_from_matches(matches, fp_rates)


class ImageMatch(NamedTuple):
    """One image's detections after matching: scores (D,), outcome (D, T) per threshold, gt count.

    ``outcome`` is 1 for a hit, 0 for a false positive, -1 for an ignored duplicate (FROC only).
    """

    scores: np.ndarray
    outcome: np.ndarray
    n_gt: int


def match_images(
    detections: PerImageDetections,
    ground_truth: PerImageBoxes,
    iou_thresholds: Sequence[float] = (0.5,),
    match: str = "iou",
    center_distance: float | None = None,
    ignore_duplicates: bool = False,
) -> list[ImageMatch]:
    """Match each image's detections to its ground truth once; AP, mAP and FROC follow from the result.

    Matching never crosses images, so bootstrapping over images can resample these matches instead
    of re-matching (:func:`medsight.evaluation.bootstrap.detection_bootstrap_ci`).
    With ``match="center"`` the IoU thresholds are not used (one column of outcomes).
    """
    _check_pairs(detections, ground_truth)
    if match not in ("iou", "center"):
        raise InputError(f"unknown matching {match!r}", fix='use "iou" or "center"')
    thresholds = np.asarray(iou_thresholds if match == "iou" else [0.0], dtype=float)
    matches = []
    for (boxes, scores), gt_boxes in zip(detections, ground_truth):
        boxes, gt_boxes = _as_boxes(boxes), _as_boxes(gt_boxes)
        scores = np.asarray(scores, dtype=float).ravel()
        if scores.size != boxes.shape[0]:
            raise InputError(f"{boxes.shape[0]} boxes but {scores.size} scores in one image")
        affinity = box_iou(boxes, gt_boxes) if match == "iou" else _centre_affinity(boxes, gt_boxes, center_distance)
        outcome = _greedy_match(affinity, scores, thresholds, ignore_duplicates)
        matches.append(ImageMatch(scores, outcome, int(gt_boxes.shape[0])))
    return matches


class PooledMatches(NamedTuple):
    """All images' matched detections in descending score order (stable), with their image index."""

    scores: np.ndarray
    outcome: np.ndarray
    image: np.ndarray
    n_gt_per_image: np.ndarray


def pool_matches(matches: Sequence[ImageMatch]) -> PooledMatches:
    """Pool per-image matches once, sorted by score; resampling images then only reweights them."""
    if not matches:
        raise InputError("no images to evaluate")
    scores = np.concatenate([m.scores for m in matches])
    order = np.argsort(-scores, kind="stable")
    outcome = np.concatenate([m.outcome for m in matches])[order]
    image = np.repeat(np.arange(len(matches)), [m.scores.size for m in matches])[order]
    return PooledMatches(scores[order], outcome, image, np.array([m.n_gt for m in matches], dtype=np.int64))


def ap_from_matches(
    matches: Sequence[ImageMatch] | PooledMatches,
    method: str = "all_point",
    threshold_index: int = 0,
    image_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """AP with precision and recall curves from :func:`match_images` output, at one threshold column.

    ``image_weights`` (how often each image is counted, as in a bootstrap resample) gives the same AP
    as repeating the images.
    """
    _check_method(method)
    pooled, det_weights, n_gt, _ = _weighted(matches, image_weights)
    hits = pooled.outcome[:, threshold_index : threshold_index + 1] == 1
    aps, precision, recall = _ap_columns(pooled.scores, hits, n_gt, method, det_weights)
    return {"ap": aps[0], "precision": precision[:, 0], "recall": recall[:, 0], "n_gt": n_gt}


def map_from_matches(
    matches: Sequence[ImageMatch] | PooledMatches, method: str = "101_point", image_weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Mean AP over every threshold column of :func:`match_images` output, and AP per column."""
    _check_method(method)
    pooled, det_weights, n_gt, _ = _weighted(matches, image_weights)
    per_threshold, _, _ = _ap_columns(pooled.scores, pooled.outcome == 1, n_gt, method, det_weights)
    return {"map": None if n_gt == 0 else float(np.mean(per_threshold)), "ap_per_threshold": per_threshold}


def froc_from_matches(
    matches: Sequence[ImageMatch] | PooledMatches,
    fp_rates: Sequence[float] = FROC_RATES,
    image_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """FROC sensitivities, CPM and curve from :func:`match_images` output (first threshold column)."""
    pooled, det_weights, n_gt, n_images = _weighted(matches, image_weights)
    fps_per_image, sensitivity = _froc_curve(pooled.scores, pooled.outcome[:, 0], det_weights, n_gt, n_images)
    rates = [float(r) for r in fp_rates]
    curve = {"fps_per_image": fps_per_image, "sensitivity": sensitivity}
    if n_gt == 0:
        return {"fp_rates": rates, "sensitivities": [None] * len(rates), "cpm": None, "curve": curve}
    at_rates = [float(sensitivity[fps_per_image <= rate].max()) for rate in rates]
    return {"fp_rates": rates, "sensitivities": at_rates, "cpm": float(np.mean(at_rates)), "curve": curve}


def detection_metrics(
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    froc_match: str = "iou",
    center_distance: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Per class and ``"mean"`` over classes with ground truth: ap50, map_coco, cpm, n_gt, n_detections.

    ``detections[i] = (boxes, scores, labels)`` and ``ground_truth[i] = (boxes, labels)`` per image;
    labels are class names or integer indices into ``class_names``.
    """
    _check_pairs(detections, ground_truth)
    per_class_dets, per_class_gts = split_by_class(detections, ground_truth, class_names)
    results: dict[str, dict[str, Any]] = {}
    for name in class_names:
        dets, gts = per_class_dets[name], per_class_gts[name]
        results[name] = {
            "ap50": average_precision(dets, gts, iou_threshold)["ap"],
            "map_coco": coco_map(dets, gts)["map"],
            "cpm": froc(
                dets, gts, match=froc_match, iou_threshold=iou_threshold, center_distance=center_distance
            )["cpm"],
            "n_gt": int(sum(len(g) for g in gts)),
            "n_detections": int(sum(len(s) for _, s in dets)),
        }
    results["mean"] = {
        key: _mean_defined([results[name][key] for name in class_names]) for key in ("ap50", "map_coco", "cpm")
    }
    return results


def split_by_class(
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], dict[str, list[np.ndarray]]]:
    """Per-class per-image lists from labelled detections and ground truth."""
    dets: dict[str, list] = {name: [] for name in class_names}
    gts: dict[str, list] = {name: [] for name in class_names}
    for (boxes, scores, labels), (gt_boxes, gt_labels) in zip(detections, ground_truth):
        boxes, gt_boxes = _as_boxes(boxes), _as_boxes(gt_boxes)
        scores = np.asarray(scores, dtype=float).ravel()
        det_names = _label_names(labels, class_names, boxes.shape[0])
        gt_names = _label_names(gt_labels, class_names, gt_boxes.shape[0])
        for name in class_names:
            keep = det_names == name
            dets[name].append((boxes[keep], scores[keep]))
            gts[name].append(gt_boxes[gt_names == name])
    return dets, gts


def _weighted(
    matches: Sequence[ImageMatch] | PooledMatches, image_weights: np.ndarray | None
) -> tuple[PooledMatches, np.ndarray, int, int]:
    """Pooled matches, per-detection weights, weighted gt count and weighted image count."""
    pooled = matches if isinstance(matches, PooledMatches) else pool_matches(matches)
    n_images = pooled.n_gt_per_image.size
    weights = np.ones(n_images, dtype=np.int64) if image_weights is None else np.asarray(image_weights)
    if weights.shape != (n_images,):
        raise InputError(f"{weights.size} image weights for {n_images} images")
    return pooled, weights[pooled.image], int(weights @ pooled.n_gt_per_image), int(weights.sum())


def _check_method(method: str) -> None:
    """Only VOC all-point and COCO 101-point interpolation exist."""
    if method not in ("all_point", "101_point"):
        raise InputError(f"unknown AP method {method!r}", fix='use "all_point" or "101_point"')


def _greedy_match(
    affinity: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, ignore_duplicates: bool
) -> np.ndarray:
    """Outcome (D, T) per detection and threshold: 1 hit, 0 false positive, -1 ignored duplicate.

    A detection hits the still-unmatched gt of highest affinity with affinity >= threshold.
    With ``ignore_duplicates``, a detection whose only candidates are already matched is -1.
    """
    n_det, n_gt = affinity.shape
    outcome = np.zeros((n_det, thresholds.size), dtype=np.int8)
    if n_det == 0 or n_gt == 0:
        return outcome
    order = np.argsort(-scores, kind="stable")
    for t, threshold in enumerate(thresholds):
        candidates = affinity >= threshold
        has_candidate = candidates.any(axis=1)
        free = np.ones(n_gt, dtype=bool)
        for d in order[has_candidate[order]]:  # detections touching no gt stay false positives
            available = candidates[d] & free
            if available.any():
                best = int(np.argmax(np.where(available, affinity[d], -np.inf)))
                free[best] = False
                outcome[d, t] = 1
            elif ignore_duplicates:
                outcome[d, t] = -1
    return outcome


def _centre_affinity(boxes: np.ndarray, gt_boxes: np.ndarray, center_distance: float | None) -> np.ndarray:
    """Affinity (D, G) for centre matching: 1 / (1 + centre distance) for a hit, -1 otherwise."""
    if boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return np.full((boxes.shape[0], gt_boxes.shape[0]), -1.0)
    if boxes.shape[1] != gt_boxes.shape[1]:
        raise InputError(f"cannot compare {boxes.shape[1] // 2}D boxes with {gt_boxes.shape[1] // 2}D boxes")
    nd = boxes.shape[1] // 2
    det_centres = (boxes[:, :nd] + boxes[:, nd:]) / 2.0
    gt_centres = (gt_boxes[:, :nd] + gt_boxes[:, nd:]) / 2.0
    distance = np.linalg.norm(det_centres[:, None, :] - gt_centres[None, :, :], axis=2)
    if center_distance is None:
        centres = det_centres[:, None, :]
        inside = np.all((centres >= gt_boxes[None, :, :nd]) & (centres <= gt_boxes[None, :, nd:]), axis=2)
    else:
        inside = distance <= center_distance
    return np.where(inside, 1.0 / (1.0 + distance), -1.0)


def _ap_columns(
    scores: np.ndarray, hits: np.ndarray, n_gt: int, method: str, weights: np.ndarray
) -> tuple[list[float | None], np.ndarray, np.ndarray]:
    """AP per column of hits (D, T), with precision and recall (G, T) at each distinct score.

    Detections are sorted by descending score; ``weights`` counts each one (bootstrap resamples);
    detections counted zero times are dropped first.
    """
    unweighted = bool(np.all(weights == 1))
    if not unweighted:
        kept = weights > 0
        scores, hits, weights = scores[kept], hits[kept], weights[kept]
    ends = _tie_group_ends(scores)
    rows_hits = np.ascontiguousarray(hits.T)  # (T, D): every pass below runs along contiguous rows
    true_pos = np.cumsum(rows_hits if unweighted else rows_hits * weights, axis=1)[:, ends]
    seen = np.cumsum(weights)[ends]
    precision = true_pos / np.maximum(seen, 1)
    if n_gt == 0:
        return [None] * hits.shape[1], precision.T, np.zeros_like(precision.T)
    recall = true_pos / n_gt
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    if method == "all_point":
        aps = np.sum(np.diff(recall, axis=1, prepend=0.0) * envelope, axis=1)
    else:
        levels = np.linspace(0.0, 1.0, 101)
        padded = np.concatenate([envelope, np.zeros((envelope.shape[0], 1))], axis=1)
        aps = [np.mean(padded[t, np.searchsorted(recall[t], levels, side="left")]) for t in range(recall.shape[0])]
    return [float(ap) for ap in aps], precision.T, recall.T


def _froc_curve(
    scores: np.ndarray, outcome: np.ndarray, weights: np.ndarray, n_gt: int, n_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """(false positives per image, sensitivity) at every distinct score threshold, from (0, 0).

    ``scores`` are sorted in descending order; ignored duplicates (outcome -1) do not count.
    """
    counted = (outcome >= 0) & (weights > 0)
    scores, outcome, weights = scores[counted], outcome[counted], weights[counted]
    hits = np.cumsum((outcome == 1) * weights)
    false_pos = np.cumsum((outcome == 0) * weights)
    last_of_tie = _tie_group_ends(scores)
    fps_per_image = np.concatenate([[0.0], false_pos[last_of_tie] / max(n_images, 1)])
    sensitivity = np.concatenate([[0.0], hits[last_of_tie] / n_gt if n_gt else np.zeros(last_of_tie.size)])
    return fps_per_image, sensitivity


def _tie_group_ends(sorted_scores: np.ndarray) -> np.ndarray:
    """Index of the last detection of each run of equal scores (scores sorted in descending order)."""
    if sorted_scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _label_names(labels: np.ndarray, class_names: Sequence[str], n_boxes: int) -> np.ndarray:
    """Labels as class-name strings; integer labels index ``class_names``."""
    labels = np.asarray(labels).ravel()
    if labels.size != n_boxes:
        raise InputError(f"{n_boxes} boxes but {labels.size} labels in one image")
    if labels.size == 0:
        return np.zeros(0, dtype=object)
    if np.issubdtype(labels.dtype, np.integer):
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise InputError(
                f"label index {int(labels.max())} outside the {len(class_names)} classes {list(class_names)}"
            )
        return np.asarray(class_names, dtype=object)[labels]
    names = labels.astype(str).astype(object)
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise InputError(f"unknown class names {unknown[:5]}", fix=f"use one of {list(class_names)}")
    return names


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes as a float (N, 4) or (N, 6) array; an empty input becomes (0, 4)."""
    array = np.asarray(boxes, dtype=float)
    if array.size == 0:
        width = array.shape[-1] if array.ndim == 2 and array.shape[-1] in (4, 6) else 4
        return array.reshape(0, width)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] not in (4, 6):
        raise InputError(f"boxes of shape {array.shape} are neither (N, 4) 2D nor (N, 6) 3D boxes")
    return array


def _check_pairs(detections: Sequence, ground_truth: Sequence) -> None:
    """Detections and ground truth must list the same images."""
    if len(detections) != len(ground_truth):
        raise InputError(
            f"detections cover {len(detections)} images but ground truth {len(ground_truth)}",
            fix="give one (possibly empty) entry per image to both",
        )
