"""The detection task's metrics report: per class and mean, VOC AP@0.5, COCO mAP, FROC/CPM, bootstrap 95% CIs.

Every figure comes from :mod:`medsight.evaluation.detection`; images are matched once per class and the
bootstrap resamples images (one set of resamples for every class and statistic, so the class mean's
interval is that of the mean, not a mean of intervals).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from medsight.evaluation.bootstrap import resample_indices
from medsight.evaluation.detection import (
    COCO_THRESHOLDS,
    FROC_RATES,
    ap_from_matches,
    froc_from_matches,
    map_from_matches,
    match_images,
    pool_matches,
    split_by_class,
)

STATISTICS = ("ap50", "map_coco", "cpm", "cpm_centre")
CURVE_POINTS = 200


def _thin(values: np.ndarray, n: int = CURVE_POINTS) -> list[float]:
    values = np.asarray(values, float)
    if values.size > n:
        values = values[np.unique(np.linspace(0, values.size - 1, n).round().astype(int))]
    return [round(float(v), 5) for v in values]


def _statistics(coco, froc_matches, centre_matches, weights: np.ndarray | None = None) -> dict[str, float | None]:
    return {"ap50": ap_from_matches(coco, "all_point", 0, image_weights=weights)["ap"],
            "map_coco": map_from_matches(coco, "101_point", image_weights=weights)["map"],
            "cpm": froc_from_matches(froc_matches, FROC_RATES, image_weights=weights)["cpm"],
            "cpm_centre": froc_from_matches(centre_matches, FROC_RATES, image_weights=weights)["cpm"]}


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def detection_report(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     ground_truth: Sequence[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                     n_boot: int = 1000, seed: int = 0, iou_threshold: float = 0.5) -> dict:
    """``{"summary": {stat: {"value", "ci95"}}, "per_class": {name: {...}}}`` over the given images.

    ``detections[i] = (boxes, scores, labels)``, ``ground_truth[i] = (boxes, labels)`` as in
    :func:`medsight.evaluation.detection.detection_metrics`. Per class: ``ap50`` (VOC all-point at
    ``iou_threshold``), ``map_coco`` (101-point, IoU 0.5:0.95), ``cpm`` and FROC sensitivities (hits by
    IoU >= ``iou_threshold``) and ``cpm_centre`` with its FROC (a hit when the detection's centre lies in
    the object's box, as lesion-detection challenges count hits), each with a 95% interval, counts and
    the PR and FROC curves.
    """
    dets, gts = split_by_class(detections, ground_truth, class_names)
    n_images = len(detections)
    pooled: dict[str, tuple] = {}
    per_class: dict[str, dict] = {}
    for name in class_names:
        coco = pool_matches(match_images(dets[name], gts[name], COCO_THRESHOLDS))
        froc_matches = pool_matches(match_images(dets[name], gts[name], [iou_threshold], ignore_duplicates=True))
        centre_matches = pool_matches(match_images(dets[name], gts[name], match="center", ignore_duplicates=True))
        pooled[name] = (coco, froc_matches, centre_matches)
        ap = ap_from_matches(coco, "all_point", 0)
        fr = froc_from_matches(froc_matches, FROC_RATES)
        fr_centre = froc_from_matches(centre_matches, FROC_RATES)
        per_class[name] = {**_statistics(coco, froc_matches, centre_matches),
                           "froc": {"fp_rates": fr["fp_rates"], "sensitivities": fr["sensitivities"]},
                           "froc_centre": {"fp_rates": fr_centre["fp_rates"],
                                           "sensitivities": fr_centre["sensitivities"]},
                           "n_gt": int(sum(len(g) for g in gts[name])),
                           "n_detections": int(sum(len(s) for _, s in dets[name])),
                           "pr_curve": {"recall": _thin(ap["recall"]), "precision": _thin(ap["precision"])},
                           "froc_curve": {"fps_per_image": _thin(fr["curve"]["fps_per_image"]),
                                          "sensitivity": _thin(fr["curve"]["sensitivity"])}}
    draws: dict[tuple[str, str], list[float]] = {}
    for indices in resample_indices(n_images, n_boot, seed):
        weights = np.bincount(indices, minlength=n_images)
        values = {name: _statistics(*pooled[name], weights) for name in class_names}
        for stat in STATISTICS:
            for name in class_names:
                if values[name][stat] is not None:
                    draws.setdefault((name, stat), []).append(values[name][stat])
            mean = _mean([values[name][stat] for name in class_names])
            if mean is not None:
                draws.setdefault(("mean", stat), []).append(mean)

    def interval(key: tuple[str, str]) -> list[float] | None:
        vals = draws.get(key)
        return [float(v) for v in np.percentile(vals, [2.5, 97.5])] if vals else None

    for name in class_names:
        for stat in STATISTICS:
            per_class[name][f"{stat}_ci95"] = interval((name, stat))
    summary = {stat: {"value": _mean([per_class[n][stat] for n in class_names]), "ci95": interval(("mean", stat))}
               for stat in STATISTICS}
    summary["n_gt"] = int(sum(per_class[n]["n_gt"] for n in class_names))
    summary["n_detections"] = int(sum(per_class[n]["n_detections"] for n in class_names))
    summary["fp_rates"] = list(FROC_RATES)
    return {"summary": summary, "per_class": per_class}
