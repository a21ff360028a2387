"""Metrics on arrays: segmentation overlap and surface distances, classification, detection, bootstrap."""
from __future__ import annotations

from medsight.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_distribution,
    detection_bootstrap_ci,
    paired_bootstrap_test,
    take_rows,
)
from medsight.evaluation.classification import (
    choose_threshold,
    classification_metrics,
    delong_test,
    expected_calibration_error,
    reliability_curve,
    roc_auc,
    roc_curve_points,
)
from medsight.evaluation.detection import (
    ap_from_matches,
    average_precision,
    box_iou,
    coco_map,
    detection_metrics,
    froc,
    froc_from_matches,
    map_from_matches,
    match_images,
)
from medsight.evaluation.segmentation import segmentation_metrics, summarise

__all__ = [
    "ap_from_matches",
    "average_precision",
    "bootstrap_ci",
    "bootstrap_distribution",
    "box_iou",
    "choose_threshold",
    "classification_metrics",
    "coco_map",
    "delong_test",
    "detection_bootstrap_ci",
    "detection_metrics",
    "expected_calibration_error",
    "froc",
    "froc_from_matches",
    "map_from_matches",
    "match_images",
    "paired_bootstrap_test",
    "reliability_curve",
    "roc_auc",
    "roc_curve_points",
    "segmentation_metrics",
    "summarise",
    "take_rows",
]
