"""Where the foreground sits: does every image show its structure in the same place, and is it mirror-symmetric?

An organ in a canonical view (lungs on a chest X-ray, a brain in an MR volume) sits in the same place in
every image; vessels, cells, membranes and tumours do not. The fingerprint reduces each case's label map to
a coarse grid of label fractions (:func:`coarse_layout`); :func:`layout_summary` then asks two questions
that the augmentation rules answer from (``tasks/segmentation.py``):

- **consistency**: the mean over cases of the Dice between a case's coarse foreground and the mean of the
  other cases' (both at 0.5). Shenzhen lungs 0.75; DRIVE vessels, ISBI membranes and BraTS tumours
  0.00 (a thin or wandering structure fills no cell to one half). A consistent layout is anatomy the
  network can learn: an image upside down or rotated by 90 degrees never comes, and training on such
  views spends its few steps on a harder problem.
- **flip overlap** per axis: for each label, the overlap (sum of minima over sum of maxima) of its mean map
  with its own mirror image, the smallest over labels. Two lungs mirrored left-right overlap by 0.75,
  up-down by 0.45; a "left kidney" label mirrored left-right lands on the right kidney and overlaps ~0.
"""
from __future__ import annotations

import numpy as np

#: cells per axis of the coarse layout grid, by dims (coarser in 3D: a case's maps, one per label, are
#: held until every case is read, and 104 labels x 16^3 float32 cells would be 1.7 MB a case)
LAYOUT_GRID = {2: 16, 3: 8}


def _edges(n: int, cells: int) -> np.ndarray:
    return np.linspace(0, n, cells + 1).round().astype(int)


def coarse_layout(label: np.ndarray, values: list[int], grid: int | None = None) -> np.ndarray:
    """``(len(values), grid, ..)`` fractions (float16) of each label value over a ``grid``-per-axis grid of
    the image (default :data:`LAYOUT_GRID` for its dims).

    One pass over the volume whatever the number of labels: each slab of the first axis is counted by
    ``np.bincount`` over (label, cell) pairs (a 104-label CT costs what a 1-label one does).
    """
    grid = int(grid or LAYOUT_GRID.get(label.ndim, 8))
    values = [int(v) for v in values]
    if not values:
        return np.zeros((0,) + (grid,) * label.ndim, np.float16)
    for ax, n in enumerate(label.shape):  # an axis shorter than the grid: each slice repeated over its cells
        if n < grid:
            label = np.repeat(label, np.diff(_edges(grid, n)), axis=ax)
    top = max(int(label.max(initial=0)), max(values)) + 1
    lut = np.full(top + 1, len(values), np.int64)  # values not asked for (background, < 0) count in a spare row
    lut[values] = np.arange(len(values))
    bins = [np.repeat(np.arange(grid), np.diff(_edges(n, grid))) for n in label.shape[1:]]
    cell = np.zeros(label.shape[1:], np.int64)
    for ax, b in enumerate(bins):
        shape = [1] * len(bins)
        shape[ax] = b.size
        cell = cell * grid + b.reshape(shape)
    per_slab = grid ** (label.ndim - 1)
    cell_voxels = np.ones(1)
    for b in bins:
        cell_voxels = np.multiply.outer(cell_voxels, np.bincount(b, minlength=grid)).ravel()
    out = np.empty((len(values), grid, per_slab), np.float32)
    first = _edges(label.shape[0], grid)
    for k in range(grid):
        slab = label[first[k]:first[k + 1]]
        idx = lut[np.clip(slab, -1, top)] * per_slab + cell  # -1: lut's last entry, the spare row
        counts = np.bincount(idx.ravel(), minlength=(len(values) + 1) * per_slab).reshape(len(values) + 1, per_slab)
        out[:, k] = counts[:len(values)] / (cell_voxels * len(slab))
    return out.reshape((len(values),) + (grid,) * label.ndim).astype(np.float16)


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum() + b.sum())
    return None if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def layout_summary(layouts: list[np.ndarray]) -> dict | None:
    """``consistency`` and per-axis ``flip_overlap`` of the cases' coarse layouts (see the module); None for < 2."""
    if len(layouts) < 2:
        return None
    stack = np.stack(layouts).astype(np.float64)  # (cases, labels, *grid); float16 cells sum exactly
    foreground = stack.sum(1)
    total = foreground.sum(0)
    scores = []
    for case in foreground:
        others = (total - case) / (len(foreground) - 1)
        d = _dice(case >= 0.5, others >= 0.5)
        if d is not None:
            scores.append(d)
    mean_maps = stack.mean(0)
    flips = []
    for ax in range(mean_maps.ndim - 1):
        overlaps = []
        for m in mean_maps:
            denom = float(np.maximum(m, np.flip(m, ax)).sum())
            if denom > 0:
                overlaps.append(float(np.minimum(m, np.flip(m, ax)).sum()) / denom)
        flips.append(round(min(overlaps), 4) if overlaps else 1.0)
    return {"grid": int(stack.shape[2]), "consistency": round(float(np.mean(scores)), 4) if scores else 0.0,
            "flip_overlap": flips}
