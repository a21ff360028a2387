"""Turning images (C, *spatial) into something ``imshow`` draws: windowed grey or RGB, one 2D plane.

Planes are drawn as the arrays lie: 2D images as (rows, columns); a 3D slice ``array[..., k]`` (the axial
plane of nibabel's (i, j, k) order) transposed with ``origin="lower"``, so i runs left to right.
"""
from __future__ import annotations

import numpy as np


def window(plane: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale an array to [0, 1] between its ``low`` and ``high`` percentiles."""
    plane = np.asarray(plane, dtype=np.float32)
    finite = plane[np.isfinite(plane)]
    if finite.size == 0:
        return np.zeros_like(plane)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(plane) - lo) / (hi - lo), 0.0, 1.0)


def display_plane(image: np.ndarray, index: int | None = None) -> np.ndarray:
    """Plane of an image (C, *spatial) to draw: (H, W, 3) for a 3-channel 2D image, else channel 0 (H, W).

    For 3D images ``index`` picks the slice along the last axis (default: the middle one).
    """
    image = np.asarray(image)
    if image.ndim == 4:
        k = image.shape[-1] // 2 if index is None else int(index)
        return window(image[0, :, :, k])
    if image.ndim != 3:
        raise ValueError(f"expected an image (C, *spatial) with 2 or 3 spatial axes, got shape {image.shape}")
    if image.shape[0] == 3:  # one window for the three channels keeps the colours' balance
        return window(np.moveaxis(image, 0, -1), 0.0, 100.0)
    return window(image[0])


def plane_of(volume: np.ndarray, index: int | None) -> np.ndarray:
    """A spatial array (*spatial) as the plane drawn: itself in 2D, ``volume[..., index]`` in 3D."""
    volume = np.asarray(volume)
    return volume if volume.ndim == 2 or index is None else volume[..., int(index)]


def imshow_kwargs(ndim: int) -> dict:
    """``imshow``/``contour`` placement of a plane: 3D slices are shown transposed from the lower left."""
    return {"origin": "lower"} if ndim == 3 else {"origin": "upper"}


def oriented(plane: np.ndarray, ndim: int) -> np.ndarray:
    """The plane as drawn: transposed (first axis left to right) for a slice of a 3D image."""
    if ndim != 3:
        return plane
    return np.swapaxes(plane, 0, 1)
