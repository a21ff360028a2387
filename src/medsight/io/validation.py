"""The checks and the voxel-type policy every reader applies before handing an image over."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.errors import InputError
from medsight.io.image import Image


def output_dtype(dtype: np.dtype | type) -> np.dtype:
    """The dtype a reader returns for voxels stored as ``dtype``: floats as float32, integers kept, bool as uint8."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.dtype(np.float32)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def normalise_voxels(array: np.ndarray) -> np.ndarray:
    """``array`` cast to ``output_dtype`` (no copy when it already has it)."""
    return array.astype(output_dtype(array.dtype), copy=False)


def check_geometry(image: Image, path: str | Path) -> None:
    """Raise InputError when spacing is not positive and finite, or origin/direction are not finite."""
    spacing = np.asarray(image.spacing, dtype=float)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"voxel spacing {tuple(spacing.tolist())} is not positive", path=path,
                         fix="fix the pixdim/spacing fields of the header")
    if not (np.all(np.isfinite(image.origin)) and np.all(np.isfinite(image.direction))):
        raise InputError("origin or direction in the header is not finite", path=path)


def refuse_non_finite(image: Image, path: str | Path) -> None:
    """Raise InputError when a float image holds NaN or Inf voxels."""
    if image.array.dtype.kind != "f":
        return
    bad = image.array.size - int(np.count_nonzero(np.isfinite(image.array)))
    if bad:
        raise InputError(f"{bad} of {image.array.size} voxels are NaN or Inf", path=path,
                         fix="replace them (e.g. with 0) or read with check_finite=False")
