"""Intensity normalisation per channel, as the Plan says (CT window + z-score, per-image z-score, RGB)."""
from __future__ import annotations

import numpy as np

from medsight.errors import PlanError

SCHEMES = ("ct", "zscore", "rgb", "none")


def normalize_channel(x: np.ndarray, scheme: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise one channel ``x`` by ``scheme`` (a plan entry such as ``{"scheme": "zscore"}``).

    - ``ct``: clip to the dataset's foreground 0.5/99.5 percentiles, then z-score with the dataset's
      foreground mean and std (nnU-Net's CTNormalization).
    - ``zscore``: per-image z-score (inside ``mask`` when given, e.g. the non-zero region).
    - ``rgb``: per channel with fixed dataset (or ImageNet) ``mean``/``std`` on values scaled to 0-1.
    - ``none``: unchanged.
    """
    name = scheme.get("scheme", "zscore")
    x = x.astype(np.float32, copy=True)
    if name == "ct":
        lo, hi = scheme["clip"]
        np.clip(x, lo, hi, out=x)
        x -= scheme["mean"]
        x /= max(scheme["std"], 1e-8)
    elif name == "zscore":
        region = x[mask] if mask is not None and mask.any() else x
        mean, std = float(region.mean()), float(region.std())
        x -= mean
        x /= max(std, 1e-8)
        if mask is not None and mask.any():
            x[~mask] = 0.0
    elif name == "rgb":
        x /= float(scheme.get("scale", 255.0))
        x -= scheme.get("mean", 0.5)
        x /= max(scheme.get("std", 0.25), 1e-8)
    elif name != "none":
        raise PlanError(f"unknown normalisation scheme {name!r}", fix=f"use one of {', '.join(SCHEMES)}")
    return x


def normalize(array: np.ndarray, schemes: list[dict], mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise every channel of a (C, *spatial) array with its scheme."""
    if len(schemes) != array.shape[0]:
        raise PlanError(f"plan has {len(schemes)} normalisation entries but the image has {array.shape[0]} channels")
    return np.stack([normalize_channel(array[c], schemes[c], mask) for c in range(array.shape[0])])
