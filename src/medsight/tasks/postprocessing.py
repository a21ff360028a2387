"""Segmentation post-processing decided on validation cases, as nnU-Net decides it.

Two candidate rules per trained structure (a label value, or a region):

- keep only the **largest connected component** (an organ is one piece);
- remove the **components under a size** (stray blobs, specks), the size tried on a grid of fractions of
  the structure's median reference size on the validation cases.

A rule is kept only when it raises the structure's mean validation Dice (by more than ``MIN_GAIN``); the
largest component wins ties with the size rule since it is the simpler one. Sizes are stored as physical
volumes (mm^3, mm^2; pixels when the files carry no spacing), so the rule applies in the original
geometry, whatever the network's resampling.

Example:
    >>> import numpy as np
    >>> m = np.zeros((6, 6), bool); m[0:3, 0:3] = True; m[5, 5] = True
    >>> int(remove_small_components(m, 2).sum())
    9
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

#: fractions of the median reference size (per case) tried as the smallest component kept
SIZE_FRACTIONS = (0.001, 0.003, 0.01, 0.03, 0.1)
#: a rule must raise the mean validation Dice by more than this
MIN_GAIN = 1e-4


def component_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(component index of every voxel, voxels per component with index 0 = background set to 0)."""
    labelled, _ = ndimage.label(mask)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled, sizes


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary mask (all of it when it has one or none)."""
    labelled, sizes = component_sizes(mask)
    if len(sizes) <= 2:
        return mask
    return labelled == int(np.argmax(sizes))


def _at_least(labelled: np.ndarray, sizes: np.ndarray, min_size: float) -> np.ndarray:
    """The voxels of the components (as :func:`component_sizes` gives them) of at least ``min_size``."""
    keep = sizes >= min_size
    keep[0] = False
    return keep[labelled]


def remove_small_components(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """The binary mask without its connected components of fewer than ``min_voxels`` voxels."""
    return _at_least(*component_sizes(mask), min_voxels)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two binary masks; 1 when both are empty."""
    denom = pred.sum() + ref.sum()
    return float(2.0 * np.logical_and(pred, ref).sum() / denom) if denom else 1.0


def decide(pairs: Sequence[tuple[np.ndarray, np.ndarray]], voxel_volumes: Sequence[float],
           fractions: Sequence[float] = SIZE_FRACTIONS) -> dict:
    """The rule for one structure from its validation (prediction, reference) masks and each case's voxel
    volume: ``{"rule": "none" | "largest_component" | "min_size", "min_size": volume or None, "dice": {...}}``."""
    base = float(np.mean([dice(p, r) for p, r in pairs]))
    scores: dict[str, float] = {"none": base,
                                "largest_component": float(np.mean([dice(largest_component(p), r) for p, r in pairs]))}
    ref_sizes = [float(r.sum()) * v for (_, r), v in zip(pairs, voxel_volumes) if r.any()]
    sizes: dict[str, float] = {}
    if ref_sizes:
        median = float(np.median(ref_sizes))
        labelled = [component_sizes(p) for p, _ in pairs]
        for f in fractions:
            volume = f * median
            trial = []
            for (lab, counts), (_, r), v in zip(labelled, pairs, voxel_volumes):
                trial.append(dice(_at_least(lab, counts * v, volume), r))
            key = f"min_size_{f:g}"
            scores[key], sizes[key] = float(np.mean(trial)), volume
    best_size = max(sizes, key=lambda k: scores[k]) if sizes else None
    rule, min_size = "none", None
    if scores["largest_component"] > base + MIN_GAIN and (
            best_size is None or scores["largest_component"] >= scores[best_size]):
        rule = "largest_component"
    elif best_size is not None and scores[best_size] > base + MIN_GAIN:
        rule, min_size = "min_size", sizes[best_size]
    return {"rule": rule, "min_size": min_size, "dice": {k: round(v, 6) for k, v in scores.items()}}


def apply(label: np.ndarray, structures: dict, decisions: dict, voxel_volume: float,
          mask_of: Callable[[np.ndarray, list[int]], np.ndarray]) -> np.ndarray:
    """``label`` (a label map, edited in place and returned) after the decided rules: voxels of a removed
    component become background."""
    # decisions come back from JSON: structure keys (label values) are strings there
    by_name = {str(k): v for k, v in structures.items()}
    largest = {str(k) for k in decisions.get("largest_component", [])}
    for key in sorted(largest & set(by_name)):
        m = mask_of(label, by_name[key])
        label[m & ~largest_component(m)] = 0
    for key, volume in decisions.get("min_component_size", {}).items():
        if str(key) in by_name and str(key) not in largest:
            m = mask_of(label, by_name[str(key)])
            label[m & ~remove_small_components(m, float(volume) / voxel_volume)] = 0
    return label


def merge(decisions: Sequence[dict]) -> dict:
    """One set of rules for an ensemble of folds: a rule holds where every fold chose it; the size is the
    smallest the folds chose (the most conservative removal)."""
    if not decisions:
        return {}
    largest = sorted(set.intersection(*[{str(k) for k in d.get("largest_component", [])} for d in decisions]))
    sizes = [d.get("min_component_size", {}) for d in decisions]
    common = set.intersection(*[{str(k) for k in s} for s in sizes])
    return {"largest_component": largest,
            "min_component_size": {k: min(float(v) for s in sizes for kk, v in s.items() if str(kk) == k)
                                   for k in sorted(common)}}
