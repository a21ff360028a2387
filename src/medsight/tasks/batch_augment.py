"""Light whole-image augmentation for classification batches (torch, one resampling per batch)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_affine_batch(x: torch.Tensor, rngs: list[np.random.Generator], aug: dict) -> torch.Tensor:
    """Rotate/scale/translate/mirror each image of a (B, C, *s) batch with its own generator."""
    b, nd = x.shape[0], x.dim() - 2
    if not aug:
        return x
    mats = []
    flips = []
    for rng in rngs:
        a = np.eye(nd)
        if nd == 2 and aug.get("rotation"):
            t = rng.uniform(*aug["rotation"])
            a = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
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
    if aug.get("brightness"):
        lo, hi = aug["brightness"]
        mult = torch.tensor([rng.uniform(lo, hi) for rng in rngs], dtype=x.dtype).view(b, *[1] * (nd + 1))
        out = out * mult
    return out
