"""Training targets of a dense (CenterNet-style) detector, rendered from boxes on the output grid.

Coordinates: a box is ``lo, hi`` per array axis in continuous input-pixel coordinates (pixel ``i`` spans
``[i, i + 1)``). The output grid has a cell per ``stride`` input pixels; in cell units an object's centre
is ``c = (lo + hi) / 2 / stride`` and its size ``(hi - lo) / stride``. For each object:

- **heatmap** (channel = its class): a Gaussian with peak exactly 1 at the cell ``floor(c)`` and
  ``sigma = max(alpha * size / 6, min_sigma)`` per axis (TTFNet's elliptical Gaussian); classes keep the
  maximum over their objects;
- **size**: ``log(size in cells)`` per axis, and **offset**: ``c - cell`` (the vector from the cell's
  corner to the true centre), written at every cell where the object's Gaussian exceeds
  ``region_threshold`` and is the largest of all objects there (so ``cell + offset`` is the centre
  from any of them, and ``offset`` lies in ``[0, 1)`` at the peak);
- **weight**: the object's Gaussian over those cells, normalised to sum 1 per object, so each object
  counts once in the regression loss (TTFNet's dense regression trains faster than centre-only).

Decoding a rendered target (:func:`medsight.detection.decode.decode_maps`) gives the boxes back exactly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_ALPHA = 0.54
MIN_SIGMA = 0.5
REGION_THRESHOLD = 0.3


def grid_shape(spatial_shape: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """Cells of the output grid of an input of ``spatial_shape``: ``ceil(size / stride)`` per axis."""
    return tuple(int(np.ceil(int(s) / int(st))) for s, st in zip(spatial_shape, stride))


def render_targets(lo: np.ndarray, hi: np.ndarray, labels: np.ndarray, grid: Sequence[int],
                   stride: Sequence[int], num_classes: int, alpha: float = DEFAULT_ALPHA,
                   min_sigma: float = MIN_SIGMA, region_threshold: float = REGION_THRESHOLD) -> dict[str, np.ndarray]:
    """Heatmap (K, *grid), size (nd, *grid), offset (nd, *grid), weight (1, *grid) of one image's boxes.

    ``lo``/``hi``: (N, nd) box corners in input pixels (array axes); ``labels``: (N,) class indices 0..K-1.
    Objects whose centre falls outside the grid are ignored.
    """
    nd = len(grid)
    grid = tuple(int(g) for g in grid)
    stride_arr = np.asarray(stride, dtype=np.float64)
    heatmap = np.zeros((num_classes, *grid), np.float32)
    size = np.zeros((nd, *grid), np.float32)
    offset = np.zeros((nd, *grid), np.float32)
    weight = np.zeros((1, *grid), np.float32)
    owner_value = np.zeros(grid, np.float32)
    lo = np.asarray(lo, np.float64).reshape(-1, nd)
    hi = np.asarray(hi, np.float64).reshape(-1, nd)
    labels = np.asarray(labels, np.int64).reshape(-1)
    # larger objects first: where a smaller one's Gaussian ties, the smaller one owns the cell
    order = np.argsort(-np.prod(hi - lo, axis=1), kind="stable")
    for n in order:
        extent = (hi[n] - lo[n]) / stride_arr
        if np.any(extent <= 0):
            continue
        centre = (lo[n] + hi[n]) / 2.0 / stride_arr
        cell = np.floor(centre).astype(np.int64)
        if np.any(cell < 0) or np.any(cell >= np.asarray(grid)):
            continue
        sigma = np.maximum(alpha * extent / 6.0, min_sigma)
        radius = np.ceil(3.0 * sigma).astype(np.int64)
        start = np.maximum(cell - radius, 0)
        stop = np.minimum(cell + radius + 1, grid)
        axes = [np.exp(-((np.arange(a, b) - c) ** 2) / (2.0 * s * s)) for a, b, c, s in zip(start, stop, cell, sigma)]
        gauss = axes[0]
        for ax in axes[1:]:
            gauss = np.multiply.outer(gauss, ax)
        gauss = gauss.astype(np.float32)
        window = tuple(slice(a, b) for a, b in zip(start, stop))
        k = int(labels[n])
        np.maximum(heatmap[(k, *window)], gauss, out=heatmap[(k, *window)])
        owned = (gauss >= region_threshold) & (gauss >= owner_value[window])
        owned[tuple(c - a for c, a in zip(cell, start))] = True  # the peak cell always belongs to its object
        if not owned.any():
            continue
        owner_value[window] = np.where(owned, gauss, owner_value[window])
        cells = np.meshgrid(*[np.arange(a, b) for a, b in zip(start, stop)], indexing="ij")
        for a in range(nd):
            size[(a, *window)][owned] = np.log(extent[a])
            offset[(a, *window)][owned] = centre[a] - cells[a][owned]
        weight[(0, *window)][owned] = gauss[owned] / gauss[owned].sum()
    return {"heatmap": heatmap, "size": size, "offset": offset, "weight": weight}
