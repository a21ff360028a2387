"""Box-aware training samples: scale jitter, a patch (crop or pad), mirroring and colour jitter, boxes moved along.

One resampling per sample (``grid_sample``, bilinear, zero padding): output pixel ``p`` (centre ``p + 0.5``)
reads input position ``(p + 0.5) / zoom + start`` per axis, mirrored axes read their coordinates reversed.
A box ``[lo, hi)`` maps to ``[(lo - start) * zoom, (hi - start) * zoom)`` (then ``P - hi, P - lo`` when
mirrored), clipped to the patch; boxes with less than ``min_visible`` of their area left are dropped.

Example:
    >>> import numpy as np
    >>> image = np.zeros((1, 40, 60), np.float32)
    >>> out, lo, hi, lab = sample_patch(image, np.array([[10., 10.]]), np.array([[20., 30.]]), np.array([0]),
    ...                                 (40, 60), {}, np.random.default_rng(0))
    >>> tuple(out.shape), lo.tolist(), hi.tolist()
    ((1, 40, 60), [[10.0, 10.0]], [[20.0, 30.0]])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

MIN_VISIBLE = 0.25


def _placement(size: float, patch: int, rng: np.random.Generator, focus: float | None) -> float:
    """Start (in zoomed pixels) of the patch along one axis: random, or so that ``focus`` lies inside."""
    if focus is not None:
        low, high = max(min(0.0, size - patch), focus - patch + 1), min(max(0.0, size - patch), focus - 1)
        if low <= high:
            return float(rng.uniform(low, high))
    if size >= patch:
        return float(rng.uniform(0.0, size - patch))
    return float(rng.uniform(size - patch, 0.0))  # negative: the image sits somewhere inside the patch


def sample_patch(image: np.ndarray, lo: np.ndarray, hi: np.ndarray, labels: np.ndarray, patch_size: Sequence[int],
                 aug: dict, rng: np.random.Generator, focus_box: int | None = None,
                 min_visible: float = MIN_VISIBLE) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """An augmented (C, *patch_size) patch of ``image`` (C, *s) and its boxes (lo, hi (M, nd), labels (M,)).

    ``aug`` keys (all optional): ``scale`` [lo, hi] (zoom drawn log-uniformly), ``mirror_axes`` (each
    mirrored with probability 1/2), ``colour`` (see :func:`colour_jitter`). ``focus_box`` places the patch
    so that this box's centre lies inside it (for images larger than the patch).
    """
    nd = image.ndim - 1
    shape = np.asarray(image.shape[1:], np.float64)
    patch = np.asarray(patch_size, np.int64)
    scale = aug.get("scale")
    zoom = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))) if scale else 1.0
    lo = np.asarray(lo, np.float64).reshape(-1, nd)
    hi = np.asarray(hi, np.float64).reshape(-1, nd)
    focus = None if focus_box is None else (lo[focus_box] + hi[focus_box]) / 2.0 * zoom
    whole = np.all(shape * zoom <= patch) and zoom == 1.0
    start = np.zeros(nd) if whole else np.array(
        [_placement(shape[a] * zoom, int(patch[a]), rng, None if focus is None else focus[a]) for a in range(nd)])
    mirror = [a for a in aug.get("mirror_axes", []) if rng.random() < 0.5]
    # input position (pixels) of each output pixel, per axis; only the region they read (plus a one-pixel
    # margin for the interpolation) is taken from the image, so a memory-mapped volume is read in part
    positions, region = [], []
    for a in range(nd):
        pos = (np.arange(patch[a]) + 0.5 + start[a]) / zoom
        lo_px = int(np.clip(np.floor(pos[0] - 1.0), 0, shape[a]))
        hi_px = int(np.clip(np.ceil(pos[-1] + 1.0), lo_px + 1, shape[a]))
        lo_px = min(lo_px, hi_px - 1)
        positions.append(pos[::-1] if a in mirror else pos)
        region.append((lo_px, hi_px))
    # a copy: a read-only memory map's slice must not become a tensor that could write through it
    crop = np.array(image[(slice(None), *[slice(a, b) for a, b in region])], dtype=np.float32, order="C")
    x = torch.from_numpy(crop)[None]
    if whole and not mirror and tuple(patch) == tuple(image.shape[1:]):
        out = x[0]
    else:  # normalised to [-1, 1] over the crop for grid_sample (outside it: zeros, as outside the image)
        coords = [torch.from_numpy(2.0 * (pos - r[0]) / (r[1] - r[0]) - 1.0).float()
                  for pos, r in zip(positions, region)]
        mesh = torch.meshgrid(*coords, indexing="ij")
        grid = torch.stack(mesh[::-1], dim=-1)[None]  # grid_sample wants (x, y[, z]) = last axis first
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    new_lo, new_hi = (lo - start / zoom) * zoom, (hi - start / zoom) * zoom
    for a in mirror:
        new_lo[:, a], new_hi[:, a] = patch[a] - new_hi[:, a], patch[a] - new_lo[:, a]
    clip_lo, clip_hi = np.clip(new_lo, 0, patch), np.clip(new_hi, 0, patch)
    full = np.prod(new_hi - new_lo, axis=1)
    visible = np.prod(np.clip(clip_hi - clip_lo, 0, None), axis=1)
    keep = (visible > 0) & (visible >= min_visible * full)
    if aug.get("colour"):
        out = colour_jitter(out, aug["colour"], rng)
    return out, clip_lo[keep], clip_hi[keep], np.asarray(labels).reshape(-1)[keep]


def colour_jitter(x: torch.Tensor, params: dict, rng: np.random.Generator) -> torch.Tensor:
    """Brightness shift, contrast factor, per-channel shift and (3 channels) saturation, in normalised units.

    ``params``: ``brightness`` (max shift), ``contrast`` [lo, hi], ``channel_shift`` (max per-channel shift),
    ``saturation`` [lo, hi]; each applied to every sample.
    """
    c = x.shape[0]
    view = (c, *[1] * (x.dim() - 1))
    out = x
    if params.get("saturation") and c == 3:
        grey = out.mean(0, keepdim=True)
        out = grey + float(rng.uniform(*params["saturation"])) * (out - grey)
    if params.get("contrast"):
        mean = out.mean()
        out = mean + float(rng.uniform(*params["contrast"])) * (out - mean)
    shift = float(rng.uniform(-1, 1)) * float(params.get("brightness", 0.0))
    per_channel = rng.uniform(-1, 1, size=c) * float(params.get("channel_shift", 0.0))
    return out + torch.tensor(shift + per_channel, dtype=out.dtype).view(view)
