"""Segmentation post-processing decided on validation cases, as nnU-Net decides it.

Candidate rules per trained structure (a label value, or a region):

- keep only the **largest connected component** (an organ is one piece);
- keep the **k largest components** when the validation references come in k pieces (two lungs, two
  kidneys: nnU-Net's single-component rule would delete one of them), k the references' median count of
  components of at least ``PIECE_FRACTION`` of their structure, up to ``MAX_PIECES``;
- remove the **components under a size** (stray blobs, specks), the size tried on a grid of fractions of
  the structure's median reference size on the validation cases.

A rule is kept only when it raises the structure's mean validation Dice (by more than ``MIN_GAIN``); the
component rules win ties with the size rule since they are the simpler ones. Sizes are stored as physical
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
#: a reference component counts as a piece of its structure from this fraction of the structure's size
PIECE_FRACTION = 0.05
#: the k-largest-components rule is tried for structures of 2 up to this many pieces
MAX_PIECES = 4


def component_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(component index of every voxel, voxels per component with index 0 = background set to 0)."""
    labelled, _ = ndimage.label(mask)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled, sizes


def largest_components(mask: np.ndarray, k: int = 1) -> np.ndarray:
    """The ``k`` largest connected components of a binary mask (all of it when it has at most ``k``)."""
    labelled, sizes = component_sizes(mask)
    if len(sizes) - 1 <= k:
        return mask
    keep = np.zeros(len(sizes), bool)
    keep[np.argsort(sizes, kind="stable")[::-1][:k]] = True
    keep[0] = False
    return keep[labelled]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary mask (all of it when it has one or none)."""
    return largest_components(mask, 1)


def pieces(reference: np.ndarray, fraction: float = PIECE_FRACTION) -> int:
    """Connected components of ``reference`` holding at least ``fraction`` of its voxels (specks do not count)."""
    _, sizes = component_sizes(reference)
    return int((sizes >= fraction * sizes.sum()).sum()) if sizes.sum() else 0


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
           fractions: Sequence[float] = SIZE_FRACTIONS, max_pieces: int = MAX_PIECES) -> dict:
    """The rule for one structure from its validation (prediction, reference) masks and each case's voxel
    volume: ``{"rule": "none" | "largest_component" | "largest_components" | "min_size", "components": k kept
    (None without a component rule), "min_size": volume or None, "dice": {trial: mean Dice}}``."""
    base = float(np.mean([dice(p, r) for p, r in pairs]))
    scores: dict[str, float] = {"none": base,
                                "largest_component": float(np.mean([dice(largest_component(p), r) for p, r in pairs]))}
    components = {"largest_component": 1}
    counts = [pieces(r) for _, r in pairs if r.any()]
    k = int(np.median(counts)) if counts else 1
    if 2 <= k <= max_pieces:
        key = f"largest_{k}_components"
        scores[key] = float(np.mean([dice(largest_components(p, k), r) for p, r in pairs]))
        components[key] = k
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
    best_size = max(sizes, key=lambda t: scores[t]) if sizes else None
    best_component = max(components, key=lambda t: scores[t])  # the single component first on a tie
    rule, kept, min_size = "none", None, None
    if scores[best_component] > base + MIN_GAIN and (
            best_size is None or scores[best_component] >= scores[best_size]):
        kept = components[best_component]
        rule = "largest_component" if kept == 1 else "largest_components"
    elif best_size is not None and scores[best_size] > base + MIN_GAIN:
        rule, min_size = "min_size", sizes[best_size]
    return {"rule": rule, "components": kept, "min_size": min_size,
            "dice": {t: round(v, 6) for t, v in scores.items()}}


def kept_components(decisions: dict) -> dict[str, int]:
    """``{structure key: components kept}`` of saved decisions (``largest_components``, or the single-
    component list ``largest_component`` that runs before the k-components rule saved)."""
    out = {str(k): 1 for k in decisions.get("largest_component", [])}
    out.update({str(k): int(v) for k, v in decisions.get("largest_components", {}).items()})
    return out


def apply(label: np.ndarray, structures: dict, decisions: dict, voxel_volume: float,
          mask_of: Callable[[np.ndarray, list[int]], np.ndarray]) -> np.ndarray:
    """``label`` (a label map, edited in place and returned) after the decided rules: voxels of a removed
    component become background."""
    # decisions come back from JSON: structure keys (label values) are strings there
    by_name = {str(k): v for k, v in structures.items()}
    largest = kept_components(decisions)
    for key in sorted(set(largest) & set(by_name)):
        m = mask_of(label, by_name[key])
        label[m & ~largest_components(m, largest[key])] = 0
    for key, volume in decisions.get("min_component_size", {}).items():
        if str(key) in by_name and str(key) not in largest:
            m = mask_of(label, by_name[str(key)])
            label[m & ~remove_small_components(m, float(volume) / voxel_volume)] = 0
    return label


def merge(decisions: Sequence[dict]) -> dict:
    """One set of rules for an ensemble of folds: a rule holds where every fold chose it; the components
    kept are the most any fold kept, the size is the smallest the folds chose (the most conservative)."""
    if not decisions:
        return {}
    kept = [kept_components(d) for d in decisions]
    largest = {k: max(c[k] for c in kept) for k in sorted(set.intersection(*[set(c) for c in kept]))}
    sizes = [d.get("min_component_size", {}) for d in decisions]
    common = set.intersection(*[{str(k) for k in s} for s in sizes])
    return {"largest_components": largest,
            "min_component_size": {k: min(float(v) for s in sizes for kk, v in s.items() if str(kk) == k)
                                   for k in sorted(common)}}
