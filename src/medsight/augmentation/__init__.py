"""Training augmentation: nnU-Net's default transforms, fused into one resampling per patch.

- :mod:`.spatial`: rotation, scaling, mirroring, elastic as one affine; patches cut straight from the case.
- :mod:`.intensity`: noise, blur, brightness, contrast, low resolution, gamma (in-place torch ops).
- :mod:`.pipeline`: :class:`TrainingAugmentation`, built from a plan dict (:func:`default_params`).
"""
from __future__ import annotations

from medsight.augmentation.pipeline import TrainingAugmentation, default_params
from medsight.augmentation.spatial import (
    SpatialParams,
    affine_matrix,
    crop_with_padding,
    extract_patch,
    initial_patch_size,
    rotation_matrix,
)

__all__ = [
    "SpatialParams",
    "TrainingAugmentation",
    "affine_matrix",
    "crop_with_padding",
    "default_params",
    "extract_patch",
    "initial_patch_size",
    "rotation_matrix",
]
