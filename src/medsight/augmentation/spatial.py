"""Spatial augmentation: one combined affine (rotation, scaling, mirroring, optional elastic) per patch.

The patch is cut straight out of the whole case: without rotation or scaling it is a plain crop (mirroring
is a reversed slice, so the patch is copied once); scaling alone is a separable resize of the covered
region (~4x cheaper); with rotation (or elastic) the output grid is mapped into the case and resampled
once (image: ``grid_sample`` linear, label: nearest neighbour by index gathering, no float copy of the
label). So there is no "initial patch" to crop first and no empty corners inside the image.

Conventions: arrays are ``(C, *spatial)``; a patch of size ``P`` centred on voxel ``c`` covers
``[c - P // 2, c - P // 2 + P)`` along each axis; ``matrix`` maps an output offset (voxels, from the
patch centre) to an input offset, so a scale > 1 covers more of the case (objects look smaller), as in
nnU-Net.

Example:
    >>> import numpy as np
    >>> img = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    >>> p = SpatialParams(matrix=None, flip_axes=(1,))
    >>> out, _ = extract_patch(img, None, center=(3, 3), patch_size=(4, 4), params=p)
    >>> bool((out.numpy() == img[:, 1:5, 1:5][:, :, ::-1]).all())
    True
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from itertools import product
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor

_TORCH_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float32, np.float64)}


@dataclass
class SpatialParams:
    """What the spatial augmentation does to one patch (cheap to keep as a record)."""

    matrix: np.ndarray | None = None  # (nd, nd) output offset -> input offset; None: plain crop
    flip_axes: tuple[int, ...] = ()  # spatial axes mirrored (0-based)
    angles: tuple[float, ...] = ()  # radians, per rotation axis (record only)
    scale: float = 1.0  # record only
    displacement: torch.Tensor | None = field(default=None, repr=False)  # (nd, *patch) voxels, elastic

    @property
    def resamples(self) -> bool:
        """True when the patch needs interpolation (rotation, scaling or elastic), not just a crop."""
        return self.matrix is not None or self.displacement is not None

    def record(self) -> dict:
        """A small JSON-able summary of what was done."""
        return {"name": "spatial", "angles": [float(a) for a in self.angles], "scale": float(self.scale),
                "flip_axes": list(self.flip_axes), "elastic": self.displacement is not None}


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation matrix from one angle (2D) or three angles about axes 0, 1, 2 (3D), applied x, then y, then z."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    if len(angles) != 3:
        raise ValueError(f"rotation needs 1 (2D) or 3 (3D) angles, got {len(angles)}")
    a, b, g = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine_matrix(angles: Sequence[float] | None, scale: float | Sequence[float], dims: int,
                  flip_axes: Sequence[int] = ()) -> np.ndarray:
    """Output-offset -> input-offset matrix: rotation @ diag(scale), mirrored axes folded in."""
    rot = rotation_matrix(angles) if angles is not None and len(angles) else np.eye(dims)
    scales = np.broadcast_to(np.asarray(scale, dtype=float), (dims,))
    matrix = rot @ np.diag(scales)
    for axis in flip_axes:
        matrix[:, axis] *= -1
    return matrix


def elastic_displacement(patch_size: Sequence[int], sigma: float, magnitude: float,
                         rng: np.random.Generator) -> torch.Tensor:
    """Smooth random displacement field (nd, *patch), in voxels: coarse noise every ``sigma`` voxels, upsampled."""
    dims = len(patch_size)
    coarse_shape = [max(2, int(math.ceil(p / max(sigma, 1.0))) + 1) for p in patch_size]
    coarse = torch.from_numpy(rng.standard_normal((1, dims, *coarse_shape)).astype(np.float32) * magnitude)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
    return F.interpolate(coarse, size=tuple(patch_size), mode=mode, align_corners=True)[0]


def _as_numpy(array: ArrayLike) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def crop_with_padding(array: ArrayLike, lower: Sequence[int], size: Sequence[int], pad_value: float = 0,
                      flip_axes: Sequence[int] = (), out: np.ndarray | None = None) -> np.ndarray:
    """Copy ``array[:, lower:lower+size]`` (C, *spatial), padded with ``pad_value`` outside, ``flip_axes`` mirrored.

    Only the patch is read, so ``array`` may be a memmap. ``out`` (C, *size) receives the result if given.
    """
    src = _as_numpy(array)
    spatial = src.shape[1:]
    if len(lower) != len(spatial) or len(size) != len(spatial):
        raise ValueError(f"crop of {len(size)}-D size {tuple(size)} from array of shape {src.shape}")
    src_slices: list[slice] = [slice(None)]
    dst_slices: list[slice] = [slice(None)]
    inside = True
    for axis, (lo, n, s) in enumerate(zip(lower, size, spatial)):
        lo, n = int(lo), int(n)
        a, b = max(lo, 0), min(lo + n, s)
        if b <= a:  # the patch misses the image along this axis: all padding
            a = b = lo = 0
        inside &= a == lo and b == lo + n
        src_slices.append(slice(a, b))
        # mirrored axis: source voxel lo + k lands at n - 1 - k
        dst_slices.append(slice(lo + n - b, lo + n - a) if axis in flip_axes else slice(a - lo, b - lo))
    shape = (src.shape[0], *(int(n) for n in size))
    region = src[tuple(src_slices)]
    flip_dims = [a + 1 for a in flip_axes]
    if out is None and inside and flip_dims and src.dtype in _TORCH_DTYPES:
        return _tensor_view(region).flip(flip_dims).numpy()  # torch.flip already makes the one copy needed
    if out is None:
        out = np.empty(shape, dtype=src.dtype)
    elif out.shape != shape:
        raise ValueError(f"output buffer shape {out.shape} != patch shape {shape}")
    if not inside:
        out.fill(pad_value)
    if flip_dims and region.size:
        if src.dtype in _TORCH_DTYPES:  # torch flips fast along any axis; numpy's reversed last axis is slow
            out[tuple(dst_slices)] = _tensor_view(region).flip(flip_dims).numpy()
        else:
            out[tuple(dst_slices)] = np.flip(region, flip_dims)
    else:
        out[tuple(dst_slices)] = region
    return out


def _source_coordinates(center: Sequence[int], patch_size: Sequence[int], params: SpatialParams) -> list[torch.Tensor]:
    """Per input axis, the (broadcastable or full) input voxel coordinate of every output voxel."""
    dims = len(patch_size)
    matrix = params.matrix if params.matrix is not None else affine_matrix(None, 1.0, dims, params.flip_axes)
    offsets = [torch.arange(p, dtype=torch.float32) - (p - 1) / 2 for p in patch_size]
    views = [off.view(*([1] * e), -1, *([1] * (dims - e - 1))) for e, off in enumerate(offsets)]
    coords = []
    for d in range(dims):
        centre = int(center[d]) - patch_size[d] // 2 + (patch_size[d] - 1) / 2
        partial = views[0] * float(matrix[d, 0]) + centre
        for e in range(1, dims - 1):
            partial = partial + views[e] * float(matrix[d, e])
        full = partial + views[dims - 1] * float(matrix[d, dims - 1])  # full size from here on
        if params.displacement is not None:
            full = full + params.displacement[d]
        coords.append(full)
    return coords


def _resample_image(image: ArrayLike, coords: list[torch.Tensor], pad_value: float) -> torch.Tensor:
    """Linear interpolation of every channel at ``coords`` (one grid, shared by the channels)."""
    src = image if isinstance(image, torch.Tensor) else None
    if src is None:
        arr = np.asarray(image)
        if arr.dtype != np.float32 or not arr.flags.c_contiguous or pad_value != 0:
            return _resample_image_from_crop(arr, coords, pad_value)
        src = _tensor_view(arr)
    elif src.dtype != torch.float32 or pad_value != 0:
        return _resample_image_from_crop(src.numpy(), coords, pad_value)
    spatial = src.shape[1:]
    dims = len(spatial)
    grid = torch.empty((*coords[0].shape, dims), dtype=torch.float32)
    for d in range(dims):  # grid_sample wants the last spatial axis first, normalised to [-1, 1]
        factor = 2.0 / max(spatial[d] - 1, 1)
        torch.mul(coords[d], factor, out=grid[..., dims - 1 - d]).sub_(1.0)
    return F.grid_sample(src[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def _resample_image_from_crop(arr: np.ndarray, coords: list[torch.Tensor], pad_value: float) -> torch.Tensor:
    """Resampling for non-float32 or non-zero padding: crop the bounding box (padded) and interpolate inside it."""
    lower = [int(math.floor(float(c.min()))) - 1 for c in coords]
    upper = [int(math.ceil(float(c.max()))) + 2 for c in coords]
    crop = crop_with_padding(arr, lower, [u - lo for u, lo in zip(upper, lower)], pad_value)
    shifted = [c - lo for c, lo in zip(coords, lower)]
    return _resample_image(torch.from_numpy(crop.astype(np.float32, copy=False)), shifted, 0.0)


def _tensor_view(arr: np.ndarray) -> torch.Tensor:
    """A torch view of ``arr`` without copying, read-only memmaps included (they are only ever read)."""
    if arr.flags.writeable:
        return torch.from_numpy(arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the array is not writeable
        return torch.from_numpy(arr)


def _resample_label(label: ArrayLike, coords: list[torch.Tensor], pad_value: int) -> torch.Tensor:
    """Nearest-neighbour label at ``coords`` by gathering, ``pad_value`` outside: no float copy of the label."""
    arr = _as_numpy(label)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    channels, spatial = arr.shape[0], arr.shape[1:]
    element_strides = [st // arr.itemsize for st in arr.strides]  # C or Fortran order (NIfTI arrays are Fortran)
    channel_stride, strides = element_strides[0], element_strides[1:]
    exact_in_float = arr.size < 2 ** 24
    index: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    for d, c in enumerate(coords):
        rounded = torch.floor(c + 0.5)
        ok = (rounded >= 0) & (rounded <= spatial[d] - 1)
        valid = ok if valid is None else valid.logical_and_(ok)
        rounded.clamp_(0, spatial[d] - 1)
        term = rounded if exact_in_float else rounded.to(torch.int64)
        index = term.mul_(int(strides[d])) if index is None else index.add_(term, alpha=int(strides[d]))
    assert index is not None and valid is not None
    index = index.to(torch.int64)
    out_shape = (channels, *index.shape)
    if channels > 1:
        index = index[None] + torch.arange(channels).view(-1, *([1] * index.ndim)) * channel_stride
        valid = valid[None].expand(out_shape)
    if arr.dtype in _TORCH_DTYPES:
        flat = _tensor_view(arr.ravel(order="K"))  # memory order: a view for C and Fortran arrays
        out = torch.take(flat, index).reshape(out_shape)
    else:
        out = torch.from_numpy(np.take(arr.ravel(order="K"), index.numpy()).astype(np.int64)).reshape(out_shape)
    return out.masked_fill_(~valid.reshape(out_shape), pad_value)


def extract_patch(image: ArrayLike, label: ArrayLike | None, center: Sequence[int], patch_size: Sequence[int],
                  params: SpatialParams | None = None, image_pad_value: float = 0.0, label_pad_value: int = 0,
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cut a (C, *patch_size) patch centred on ``center`` out of a whole case, applying ``params`` on the way.

    ``image`` (C, *spatial) and ``label`` (1, *spatial) may be memmaps: only what the patch needs is read.
    Returns torch tensors (image float32, label in its own integer dtype).
    """
    patch_size = tuple(int(p) for p in patch_size)
    if params is None or not params.resamples:
        flips = params.flip_axes if params is not None else ()
        lower = [int(c) - p // 2 for c, p in zip(center, patch_size)]
        img = crop_with_padding(image, lower, patch_size, image_pad_value, flips)
        img_t = torch.from_numpy(img if img.dtype == np.float32 else img.astype(np.float32))
        lbl_t = None
        if label is not None:
            lbl_t = torch.from_numpy(_torch_label(crop_with_padding(label, lower, patch_size, label_pad_value, flips)))
        return img_t, lbl_t
    if params.displacement is None and params.matrix is not None and _is_diagonal(params.matrix):
        return _zoom_patch(image, label, center, patch_size, params, image_pad_value, label_pad_value)
    coords = _source_coordinates(center, patch_size, params)
    img_t = _resample_image(image, coords, image_pad_value)
    lbl_t = _resample_label(label, coords, label_pad_value) if label is not None else None
    return img_t, lbl_t


def _is_diagonal(matrix: np.ndarray) -> bool:
    return bool(np.all(np.abs(matrix - np.diag(np.diag(matrix))) < 1e-9))


def _zoom_patch(image: ArrayLike, label: ArrayLike | None, center: Sequence[int], patch_size: tuple[int, ...],
                params: SpatialParams, image_pad_value: float, label_pad_value: int,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaling (and mirroring) without rotation: crop ``scale * patch`` voxels and resize them separably.

    Much cheaper than a general resampling: the image is resized linearly, the label by nearest-exact
    ``F.interpolate``. The region is a whole number of voxels with the patch's parity, so the centre is
    exact and the scale is exact to 1 / patch size (1 % for 96 voxels); the sample points are then those
    of the general path.
    """
    scales = np.abs(np.diag(params.matrix))
    flip_dims = [a + 1 for a in range(len(patch_size)) if params.matrix[a, a] < 0]
    region = tuple(_same_parity_round(s * p, p) for s, p in zip(scales, patch_size))
    lower = [int(c) - r // 2 for c, r in zip(center, region)]
    if all(r >= p for r, p in zip(region, patch_size)):
        # shrinking (or equal): F.interpolate's sample points (o + 0.5) * r / p - 0.5 never leave the crop
        crop = crop_with_padding(image, lower, region, image_pad_value)
        img = torch.from_numpy(crop if crop.dtype == np.float32 else crop.astype(np.float32))
        if region != patch_size:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(patch_size)]
            img = F.interpolate(img[None], size=patch_size, mode=mode, align_corners=False)[0]
    else:
        # enlarging: the outer sample points fall up to half a voxel beyond the region, where F.interpolate
        # would repeat the edge, so read one more voxel each side and interpolate axis by axis
        crop = crop_with_padding(image, [lo - 1 for lo in lower], [r + 2 for r in region], image_pad_value)
        img = _resize_linear(torch.from_numpy(crop.astype(np.float32, copy=False)), region, patch_size)
    lbl = None
    if label is not None:
        lbl = torch.from_numpy(_torch_label(crop_with_padding(label, lower, region, label_pad_value)))
        if region != patch_size:
            lbl = _resize_label(lbl, patch_size)
    if flip_dims:
        img = img.flip(flip_dims)
        lbl = lbl.flip(flip_dims) if lbl is not None else None
    return img, lbl


def _resize_linear(crop: torch.Tensor, region: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """Linear resize of ``region`` voxels (inside ``crop``, which has one voxel of margin) to ``size``, exactly.

    Output voxel ``o`` samples ``(o + 0.5) * region / size - 0.5`` of the region, as ``F.interpolate`` does.
    """
    out = crop
    for axis, (r, n) in enumerate(zip(region, size)):
        position = (torch.arange(n, dtype=torch.float64) + 0.5) * (r / n) + 0.5  # + 1 for the margin
        low = position.floor()
        weight = (position - low).to(torch.float32).view(*([1] * (axis + 1)), -1, *([1] * (len(size) - axis - 1)))
        low_index = low.long().clamp_(0, out.shape[axis + 1] - 1)
        high_index = (low_index + 1).clamp_(max=out.shape[axis + 1] - 1)
        out = out.index_select(axis + 1, low_index).lerp_(out.index_select(axis + 1, high_index), weight)
    return out


def _same_parity_round(value: float, like: int) -> int:
    """The integer nearest ``value`` with the parity of ``like`` (at least 1)."""
    parity = like % 2
    return max(parity or 2, parity + 2 * int(round((value - parity) / 2)))


def _resize_label(lbl: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest-exact resize of a (C, *spatial) integer label, in a dtype torch can interpolate."""
    work = lbl if lbl.dtype in (torch.uint8, torch.float32) else lbl.to(torch.float64)
    out = F.interpolate(work[None], size=size, mode="nearest-exact")[0]
    return out if out.dtype == lbl.dtype else out.round().to(lbl.dtype)


def _torch_label(arr: np.ndarray) -> np.ndarray:
    """Labels in a dtype torch holds (uint16/uint32 become int64)."""
    return arr if arr.dtype in _TORCH_DTYPES else arr.astype(np.int64)


def initial_patch_size(patch_size: Sequence[int], rotation_range: Sequence | float | None = None,
                       scale_range: Sequence[float] | None = None) -> tuple[int, ...]:
    """Size of the box that holds the patch under any rotation and scaling in range (nnU-Net's "initial patch size").

    ``rotation_range``: (lo, hi) radians for every rotation axis, or one (lo, hi) per axis (3D: 3, 2D: 1).
    ``scale_range``: (lo, hi), > 1 covering more of the image. Crop this size first if another library
    rotates afterwards; :func:`extract_patch` does not need it.
    """
    dims = len(patch_size)
    n_angles = 1 if dims == 2 else 3
    if rotation_range is None:
        ranges = [(0.0, 0.0)] * n_angles
    else:
        rr = np.asarray(rotation_range, dtype=float)
        ranges = [tuple(rr)] * n_angles if rr.ndim == 1 else [tuple(r) for r in rr]
    if dims not in (2, 3) or len(ranges) != n_angles:
        raise ValueError(f"patch {tuple(patch_size)} / rotation ranges {ranges} do not fit 2D or 3D")
    steps = 25 if dims == 2 else 13
    candidates = []
    for lo, hi in ranges:
        # a dense grid plus the angles where an extent can peak (axis-aligned, and the 2D diagonals)
        special = [k * math.pi / 2 for k in range(-4, 5)]
        if dims == 2:
            diag = math.atan2(patch_size[1], patch_size[0]), math.atan2(patch_size[0], patch_size[1])
            special += [d + k * math.pi / 2 for d in diag for k in range(-4, 5)]
        inside = [a for a in special if lo <= a <= hi]
        candidates.append(np.unique(np.concatenate([np.linspace(lo, hi, steps), inside])))
    corners = np.array(list(product(*[(-p / 2, p / 2) for p in patch_size])))
    extent = np.array(patch_size, dtype=float)
    for angles in product(*candidates):
        rotated = corners @ rotation_matrix(angles).T
        extent = np.maximum(extent, rotated.max(0) - rotated.min(0))
    max_scale = max(1.0, float(scale_range[1])) if scale_range is not None else 1.0
    return tuple(int(math.ceil(e * max_scale - 1e-6)) for e in extent)
