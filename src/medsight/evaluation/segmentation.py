"""Segmentation metrics on label arrays: overlap, spacing-aware surface distances, volumes.

Conventions (chosen so that a missed structure can never improve a mean):

- A *structure* is a set of label values, e.g. ``{"vessel": [1]}`` or the BraTS regions
  ``{"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}``.
- Both masks empty: dice = iou = sensitivity = precision = 1, hd95 = msd = 0, ``both_empty`` True.
- Exactly one mask empty: dice = iou = 0, hd95 = msd = the image diagonal in mm (the worst case),
  and a ratio whose denominator is 0 (sensitivity with no reference, precision with no prediction)
  is 0. In general a ratio with a zero denominator is 1 only when both masks are empty, so no metric
  is ever NaN or inf and none rewards a prediction that misses.
- Surfaces are the mask voxels with at least one face neighbour outside the mask (the image border
  counts as outside). Distances are Euclidean in mm (``spacing`` per array axis) from every surface
  voxel of one mask to the nearest surface voxel of the other (the values a distance transform with
  ``sampling=spacing`` gives; computed with a k-d tree, which is faster). Same definitions as MONAI's
  ``compute_hausdorff_distance`` / ``compute_average_surface_distance`` with ``spacing``.
- hd95 = max of the two directed 95th percentiles (numpy's linear interpolation), as MONAI and
  nnU-Net report it; msd = mean of both directions' distances pooled (average symmetric surface
  distance).
- ``eval_mask`` (e.g. DRIVE's field of view): both masks are intersected with it first, so overlap
  counts only voxels inside and surfaces are those of the masked prediction and reference.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage, spatial

from medsight.errors import InputError

# the keys of each structure's dict: numeric metrics, then boolean flags
METRIC_NAMES = ("dice", "iou", "hd95", "msd", "sensitivity", "precision", "volume_pred", "volume_ref")
FLAG_NAMES = ("both_empty", "pred_empty", "ref_empty")


def segmentation_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels_or_regions: Mapping[str, Sequence[int]],
    eval_mask: np.ndarray | None = None,
) -> dict[str, dict[str, float | bool]]:
    """Per structure: dice, iou, hd95, msd, sensitivity, precision, volumes (mm^3 or mm^2) and empty flags."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    spacing_mm = _check_inputs(pred, ref, spacing, labels_or_regions, eval_mask)
    inside = None if eval_mask is None else np.asarray(eval_mask).astype(bool)
    diagonal_mm = float(np.sqrt(np.sum((np.asarray(pred.shape) * spacing_mm) ** 2)))
    voxel_volume = float(np.prod(spacing_mm))
    results: dict[str, dict[str, float | bool]] = {}
    for name, values in labels_or_regions.items():
        pred_mask = np.isin(pred, list(values))
        ref_mask = np.isin(ref, list(values))
        if inside is not None:
            pred_mask &= inside
            ref_mask &= inside
        results[name] = binary_metrics(pred_mask, ref_mask, spacing_mm, diagonal_mm, voxel_volume)
    return results


def binary_metrics(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
    diagonal_mm: float | None = None,
    voxel_volume: float | None = None,
) -> dict[str, float | bool]:
    """All metrics of one pair of boolean masks (see the module docstring for the empty-mask rules)."""
    spacing_mm = np.asarray(spacing, dtype=float)
    if diagonal_mm is None:
        diagonal_mm = float(np.sqrt(np.sum((np.asarray(pred_mask.shape) * spacing_mm) ** 2)))
    if voxel_volume is None:
        voxel_volume = float(np.prod(spacing_mm))
    n_pred = int(np.count_nonzero(pred_mask))
    n_ref = int(np.count_nonzero(ref_mask))
    tp = int(np.count_nonzero(pred_mask & ref_mask))
    both_empty = n_pred == 0 and n_ref == 0
    fallback = 1.0 if both_empty else 0.0
    if both_empty:
        hd95, msd = 0.0, 0.0
    elif n_pred == 0 or n_ref == 0:
        hd95, msd = diagonal_mm, diagonal_mm
    else:
        hd95, msd = surface_distance_metrics(pred_mask, ref_mask, spacing_mm)
    return {
        "dice": _ratio(2 * tp, n_pred + n_ref, fallback),
        "iou": _ratio(tp, n_pred + n_ref - tp, fallback),
        "hd95": hd95,
        "msd": msd,
        "sensitivity": _ratio(tp, n_ref, fallback),
        "precision": _ratio(tp, n_pred, fallback),
        "volume_pred": n_pred * voxel_volume,
        "volume_ref": n_ref * voxel_volume,
        "both_empty": both_empty,
        "pred_empty": n_pred == 0,
        "ref_empty": n_ref == 0,
    }


def surface_distance_metrics(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]
) -> tuple[float, float]:
    """(hd95, msd) in mm between the surfaces of two non-empty boolean masks."""
    spacing_mm = np.asarray(spacing, dtype=float)
    window = _bounding_window(pred_mask | ref_mask)
    pred_points = np.argwhere(surface_voxels(pred_mask[window])) * spacing_mm
    ref_points = np.argwhere(surface_voxels(ref_mask[window])) * spacing_mm
    # nearest-neighbour queries give the same distances as a spacing-aware distance transform of the
    # surfaces, 2-3x faster on BraTS and DRIVE (measured); the crop only speeds up the erosion
    pred_to_ref = spatial.cKDTree(ref_points).query(pred_points, k=1)[0]
    ref_to_pred = spatial.cKDTree(pred_points).query(ref_points, k=1)[0]
    hd95 = max(float(np.percentile(pred_to_ref, 95)), float(np.percentile(ref_to_pred, 95)))
    msd = float((pred_to_ref.sum() + ref_to_pred.sum()) / (pred_to_ref.size + ref_to_pred.size))
    return hd95, msd


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it; the image border counts as outside."""
    mask = mask.astype(bool)
    interior = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)
    return mask & ~interior


def summarise(per_case: Sequence[Mapping[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, median, std (ddof=0) and n per structure and metric; flags become counts of True.

    ``per_case`` holds the outputs of :func:`segmentation_metrics`; entries whose value is not a
    per-structure dict (e.g. ``"case": "drive_21"``) are ignored.
    """
    collected: dict[str, dict[str, list]] = {}
    for case in per_case:
        for structure, metrics in case.items():
            if not isinstance(metrics, Mapping):
                continue
            bucket = collected.setdefault(structure, {})
            for metric, value in metrics.items():
                bucket.setdefault(metric, []).append(value)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for structure, metrics in collected.items():
        summary[structure] = {}
        for metric, values in metrics.items():
            if all(isinstance(v, (bool, np.bool_)) for v in values):
                summary[structure][metric] = {"count": int(sum(bool(v) for v in values)), "n": len(values)}
                continue
            array = np.asarray(values, dtype=float)
            summary[structure][metric] = {
                "mean": float(array.mean()),
                "median": float(np.median(array)),
                "std": float(array.std()),
                "n": int(array.size),
            }
    return summary


def _ratio(numerator: int, denominator: int, fallback: float) -> float:
    """numerator / denominator, or ``fallback`` when the denominator is 0."""
    return float(numerator) / denominator if denominator else fallback


def _bounding_window(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty mask grown by one voxel, clipped to the image."""
    window = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        window.append(slice(max(int(occupied[0]) - 1, 0), min(int(occupied[-1]) + 2, mask.shape[axis])))
    return tuple(window)


def _check_inputs(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels_or_regions: Mapping[str, Sequence[int]],
    eval_mask: np.ndarray | None,
) -> np.ndarray:
    """Validate shapes and spacing; return the spacing as a float array."""
    if pred.shape != ref.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from reference shape {ref.shape}",
            fix="predict on the reference's grid (medsight predict keeps the input geometry)",
        )
    if pred.ndim < 1:
        raise InputError("segmentation arrays need at least one axis")
    spacing_mm = np.asarray(spacing, dtype=float).ravel()
    if spacing_mm.size != pred.ndim or not np.all(np.isfinite(spacing_mm)) or np.any(spacing_mm <= 0):
        raise InputError(
            f"spacing {tuple(spacing)} does not give one positive step per axis of shape {pred.shape}",
            fix="pass the image's spacing without the channel axis",
        )
    if eval_mask is not None and np.shape(eval_mask) != pred.shape:
        raise InputError(
            f"evaluation mask shape {np.shape(eval_mask)} differs from image shape {pred.shape}",
            fix="use the field-of-view mask of the same image",
        )
    if not labels_or_regions:
        raise InputError("no structures to evaluate", fix='pass e.g. {"foreground": [1]}')
    for name, values in labels_or_regions.items():
        if len(values) == 0:
            raise InputError(f"structure {name!r} has no label values", fix="list the label values it is made of")
    return spacing_mm
