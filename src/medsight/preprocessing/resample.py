"""Resampling of channel-first arrays between spacings (images by spline, labels by one-hot or nearest)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def shape_for_spacing(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Spatial shape after resampling from ``spacing`` to ``target_spacing`` (nnU-Net's rounding)."""
    return tuple(max(1, int(round(s * sp / tsp))) for s, sp, tsp in zip(shape, spacing, target_spacing))


def resample_image(array: np.ndarray, new_shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Resample a (C, *spatial) float image to ``new_shape`` with a spline of ``order``; no-op when equal."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(array.shape[1:]) == new_shape:
        return array
    out = np.empty((array.shape[0], *new_shape), dtype=np.float32)
    for c in range(array.shape[0]):
        zoom = [n / o for n, o in zip(new_shape, array.shape[1:])]
        out[c] = _zoom_exact(array[c].astype(np.float32, copy=False), zoom, new_shape, order)
    return out


def resample_label(label: np.ndarray, new_shape: Sequence[int], mode: str = "onehot") -> np.ndarray:
    """Resample a (1, *spatial) label map: ``onehot`` (linear per class, argmax; smooth borders) or ``nearest``."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(label.shape[1:]) == new_shape:
        return label
    zoom = [n / o for n, o in zip(new_shape, label.shape[1:])]
    if mode == "nearest":
        return _zoom_exact(label[0], zoom, new_shape, 0)[None].astype(label.dtype)
    values = np.unique(label)
    best = np.full(new_shape, -1.0, dtype=np.float32)
    out = np.zeros(new_shape, dtype=label.dtype)
    for v in values:
        prob = _zoom_exact((label[0] == v).astype(np.float32), zoom, new_shape, 1)
        take = prob > best
        out[take] = v
        best[take] = prob[take]
    return out[None]


def _zoom_exact(arr: np.ndarray, zoom: Sequence[float], new_shape: tuple[int, ...], order: int) -> np.ndarray:
    """ndimage.zoom with grid_mode so pixel areas map exactly, and the output shape guaranteed."""
    out = ndimage.zoom(arr, zoom, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    if out.shape != new_shape:  # rounding in zoom can be one off
        sl = tuple(slice(0, n) for n in new_shape)
        pad = [(0, max(0, n - s)) for n, s in zip(new_shape, out.shape)]
        out = np.pad(out[sl], pad, mode="edge")
    return out
