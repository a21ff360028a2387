"""The one image type: a channel-first array with its geometry.

Axis order is the file's own: for 3D files (i, j, k) as nibabel gives them, for 2D files rows then
columns as PIL and numpy give them. Geometry follows ITK's physical (LPS) convention, expressed in
that same axis order: ``spacing[a]`` is the step along array axis ``a``, ``direction[:, a]`` its unit
vector, ``origin`` the physical position of voxel 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np


@dataclass
class Image:
    """A medical image: ``array`` of shape (C, *spatial) plus geometry and channel names.

    Example:
        >>> img = Image(np.zeros((1, 4, 5), np.float32), spacing=(0.5, 0.5))
        >>> img.spatial_shape, img.ndim
        ((4, 5), 2)
    """

    array: np.ndarray
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    direction: np.ndarray | None = None
    channel_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.array.ndim < 2:
            raise ValueError(f"Image array needs a channel axis and >= 1 spatial axis, got shape {self.array.shape}")
        nd = self.array.ndim - 1
        self.spacing = tuple(float(s) for s in self.spacing) if len(self.spacing) else (1.0,) * nd
        self.origin = tuple(float(o) for o in self.origin) if len(self.origin) else (0.0,) * nd
        self.direction = np.eye(nd) if self.direction is None else np.asarray(self.direction, dtype=float).reshape(nd, nd)
        if len(self.spacing) != nd or len(self.origin) != nd:
            raise ValueError(f"spacing {self.spacing} / origin {self.origin} do not match {nd} spatial axes")
        if not self.channel_names:
            self.channel_names = [str(c) for c in range(self.array.shape[0])]

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return self.array.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis."""
        return tuple(self.array.shape[1:])

    @property
    def num_channels(self) -> int:
        """Number of channels."""
        return int(self.array.shape[0])

    @property
    def affine_lps(self) -> np.ndarray:
        """Homogeneous (nd+1)x(nd+1) matrix mapping voxel index to physical LPS position."""
        nd = self.ndim
        a = np.eye(nd + 1)
        a[:nd, :nd] = self.direction @ np.diag(self.spacing)
        a[:nd, nd] = self.origin
        return a

    @property
    def affine(self) -> np.ndarray:
        """The nibabel (RAS) 4x4 affine of a 3D image, or the LPS matrix of a 2D one."""
        a = self.affine_lps
        if self.ndim == 3:
            a = np.diag([-1.0, -1.0, 1.0, 1.0]) @ a
        return a

    def same_geometry(self, other: "Image", atol: float = 1e-3) -> bool:
        """True when both images cover the same voxel grid in space."""
        return (
            self.spatial_shape == other.spatial_shape
            and np.allclose(self.spacing, other.spacing, atol=atol, rtol=1e-4)
            and np.allclose(self.origin, other.origin, atol=max(atol, 1e-3 * max(1.0, *np.abs(self.origin))))
            and np.allclose(self.direction, other.direction, atol=1e-3)
        )

    def with_array(self, array: np.ndarray, channel_names: Sequence[str] | None = None) -> "Image":
        """A copy with a new array on the same grid (e.g. a prediction)."""
        if tuple(array.shape[1:]) != self.spatial_shape:
            raise ValueError(f"new array spatial shape {array.shape[1:]} differs from {self.spatial_shape}")
        names = list(channel_names) if channel_names is not None else (
            self.channel_names if array.shape[0] == self.num_channels else [])
        return replace(self, array=array, direction=self.direction.copy(), channel_names=names)

    @staticmethod
    def from_affine(array: np.ndarray, affine: np.ndarray, channel_names: Sequence[str] | None = None) -> "Image":
        """Build a 3D image from a nibabel-style (RAS) affine."""
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=float)
        m = lps[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        spacing[spacing == 0] = 1.0
        return Image(array, spacing=tuple(spacing), origin=tuple(lps[:3, 3]), direction=m / spacing,
                     channel_names=list(channel_names or []))
