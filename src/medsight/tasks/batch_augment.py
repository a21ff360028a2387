"""Light whole-image augmentation for classification batches (torch, one resampling per batch).

``aug`` keys (all optional): ``rotation`` [lo, hi] radians (2D: in plane; 3D: about each axis in turn),
``scale`` [lo, hi] (isotropic), ``translate`` (fraction of the side, each way), ``mirror_axes`` (spatial
axes flipped with probability 1/2 each), ``brightness`` [lo, hi] (multiplier), ``contrast`` [lo, hi]
(scales each image around its own mean).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation by ``angles`` (one angle in 2D; three, about axes 0, 1 and 2 in turn, in 3D)."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    out = np.eye(3)
    for axis, t in enumerate(angles):
        c, s = math.cos(t), math.sin(t)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def random_affine_batch(x: torch.Tensor, rngs: list[np.random.Generator], aug: dict) -> torch.Tensor:
    """Rotate/scale/translate/mirror each image of a (B, C, *s) batch with its own generator."""
    b, nd = x.shape[0], x.dim() - 2
    if not aug:
        return x
    mats = []
    flips = []
    for rng in rngs:
        a = np.eye(nd)
        if aug.get("rotation"):
            a = rotation_matrix(rng.uniform(*aug["rotation"], size=1 if nd == 2 else 3))
        if aug.get("scale"):
            a = a * rng.uniform(*aug["scale"])
        shift = rng.uniform(-aug.get("translate", 0.0), aug.get("translate", 0.0), size=nd) * 2
        mats.append(np.concatenate([a, shift[:, None]], 1))
        flips.append([bool(rng.random() < 0.5) for _ in aug.get("mirror_axes", [])])
    theta = torch.tensor(np.stack(mats), dtype=x.dtype)
    if any(aug.get(k) for k in ("rotation", "scale", "translate")):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = x.clone() if aug.get("mirror_axes") else x
    for i, f in enumerate(flips):
        axes = [2 + ax for ax, do in zip(aug.get("mirror_axes", []), f) if do]
        if axes:
            out[i] = torch.flip(x[i:i + 1], axes)[0]
    shape = (b, *[1] * (nd + 1))
    if aug.get("contrast"):
        factor = torch.tensor([rng.uniform(*aug["contrast"]) for rng in rngs], dtype=x.dtype).view(shape)
        mean = out.mean(dim=tuple(range(1, nd + 2)), keepdim=True)
        out = (out - mean) * factor + mean
    if aug.get("brightness"):
        lo, hi = aug["brightness"]
        mult = torch.tensor([rng.uniform(lo, hi) for rng in rngs], dtype=x.dtype).view(shape)
        out = out * mult
    return out


def mirror_variants(x: torch.Tensor, mirror_axes: list[int]) -> list[torch.Tensor]:
    """``x`` and its flips over every non-empty subset of ``mirror_axes`` (spatial axes) for test-time averaging."""
    variants = [x]
    for mask in range(1, 2 ** len(mirror_axes)):
        dims = [2 + ax for k, ax in enumerate(mirror_axes) if mask >> k & 1]
        variants.append(torch.flip(x, dims))
    return variants
