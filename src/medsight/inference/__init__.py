"""Inference on whole images: sliding windows with Gaussian blending and test-time mirroring."""
from __future__ import annotations

from medsight.inference.sliding_window import (
    gaussian_importance_map,
    mirrored_predict,
    sliding_window_inference,
    window_count,
    window_positions,
    window_starts,
)

__all__ = [
    "gaussian_importance_map",
    "mirrored_predict",
    "sliding_window_inference",
    "window_count",
    "window_positions",
    "window_starts",
]
