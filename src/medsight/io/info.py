"""``ImageInfo``: an image's geometry and voxel type, read without its voxels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsight.io.image import Image


@dataclass(frozen=True)
class ImageInfo:
    """What ``read_header`` returns: the geometry ``read_image`` would give, and its voxel dtype.

    Example:
        >>> info = ImageInfo((4, 5), 1, (0.5, 0.5), (0.0, 0.0), np.eye(2), np.dtype("uint8"))
        >>> info.ndim
        2
    """

    spatial_shape: tuple[int, ...]
    num_channels: int
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spatial_shape)

    @staticmethod
    def of(image: Image) -> "ImageInfo":
        """The info of an image already in memory."""
        return ImageInfo(image.spatial_shape, image.num_channels, image.spacing, image.origin,
                         np.asarray(image.direction, dtype=float), image.array.dtype)
