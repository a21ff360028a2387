"""Cropping to the non-zero region (nnU-Net's crop) and pasting back."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def nonzero_bbox(array: np.ndarray) -> list[tuple[int, int]]:
    """Bounding box [(start, stop), ...] of voxels non-zero in any channel of a (C, *spatial) array."""
    mask = np.any(array != 0, axis=0)
    if not mask.any():
        return [(0, s) for s in mask.shape]
    mask = ndimage.binary_fill_holes(mask)
    idx = np.nonzero(mask)
    return [(int(i.min()), int(i.max()) + 1) for i in idx]


def crop(array: np.ndarray, bbox: list[tuple[int, int]]) -> np.ndarray:
    """Crop the spatial axes of a (C, *spatial) array to ``bbox``."""
    return array[(slice(None), *[slice(a, b) for a, b in bbox])]


def paste(cropped: np.ndarray, bbox: list[tuple[int, int]], full_shape: tuple[int, ...], fill=0) -> np.ndarray:
    """Place a (C, *cropped) array back into an array of spatial ``full_shape`` (inverse of ``crop``)."""
    out = np.full((cropped.shape[0], *full_shape), fill, dtype=cropped.dtype)
    out[(slice(None), *[slice(a, b) for a, b in bbox])] = cropped
    return out
