"""Localisation by slice classification: a 2D CNN tells, for every slice along each axis of a volume,
whether it holds the structure; the longest run of positive slices per axis bounds it, and the three
intervals make a 3D box (the survey's most popular localisation strategy, e.g. de Vos et al. 2017).

One network serves the three axes: each slice is resized to ``side`` x ``side`` and carries its axis as
three constant one-hot channels beside the image channels. Volumes are z-scored per channel. Boxes are
in voxel-index coordinates of the file's axis order, ``x0, y0, z0, x1, y1, z1`` with exclusive ends
(the convention of :mod:`medsight.evaluation.detection`), so a box's IoU is the same in millimetres.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.nets.multistream import StreamEncoder
from medsight.training.optim import train_in_memory


def zscore_channels(volume: np.ndarray) -> np.ndarray:
    """Each channel of a (C, *spatial) array to zero mean, unit standard deviation (float32)."""
    v = volume.astype(np.float32)
    axes = tuple(range(1, v.ndim))
    return (v - v.mean(axis=axes, keepdims=True)) / np.maximum(v.std(axis=axes, keepdims=True), 1e-6)


def axis_slices(volume: np.ndarray, axis: int, side: int) -> np.ndarray:
    """Every slice of a (C, X, Y, Z) volume along spatial ``axis``, resized: (N, C + 3, side, side).

    The last three channels are the axis as one-hot constant planes.
    """
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, axis + 1, 0)))  # (N, C, a, b)
    x = F.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    onehot = torch.zeros(x.shape[0], 3, side, side)
    onehot[:, axis] = 1.0
    return torch.cat([x, onehot], dim=1).numpy()


def slice_labels(mask: np.ndarray, axis: int) -> np.ndarray:
    """1 for each slice of a boolean (X, Y, Z) mask along ``axis`` that holds the structure."""
    other = tuple(a for a in range(3) if a != axis)
    return mask.any(axis=other).astype(np.int64)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The bounding box of a boolean (X, Y, Z) mask (exclusive ends), None when empty."""
    where = np.argwhere(mask)
    if where.size == 0:
        return None
    return np.concatenate([where.min(0), where.max(0) + 1]).astype(float)


def longest_run(probabilities: np.ndarray, threshold: float = 0.5, smooth: int = 3) -> tuple[int, int]:
    """``(start, end)`` (end exclusive) of the longest run of slices whose smoothed probability passes
    ``threshold``; the single most probable slice when none does."""
    p = np.asarray(probabilities, float)
    if smooth > 1:
        p = np.convolve(np.pad(p, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")
    best, start = (0, 0), None
    for i, positive in enumerate(np.append(p >= threshold, False)):
        if positive and start is None:
            start = i
        elif not positive and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if best == (0, 0):
        top = int(np.argmax(p))
        return top, top + 1
    return best


class SliceClassifier(nn.Module):
    """Small CNN: a slice with its axis channels -> logits (holds the structure or not)."""

    def __init__(self, in_channels: int, features: Sequence[int] = (16, 32, 64, 64)):
        super().__init__()
        self.encoder = StreamEncoder(2, in_channels, features)
        self.head = nn.Linear(self.encoder.out_features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2)."""
        return self.head(self.encoder(x))


def train_slice_classifier(slices: np.ndarray, labels: np.ndarray, epochs: int = 8, batch_size: int = 64,
                           lr: float = 2e-3, seed: int = 0) -> SliceClassifier:
    """Train :class:`SliceClassifier` on slices (N, C, s, s) with flips; classes weighted to balance."""
    torch.manual_seed(seed)
    counts = np.bincount(labels, minlength=2).astype(float)
    weight = torch.tensor(counts.sum() / np.maximum(2 * counts, 1), dtype=torch.float32)
    return train_in_memory(SliceClassifier(slices.shape[1]), slices, labels, nn.CrossEntropyLoss(weight=weight),
                           epochs, batch_size, lr, 1e-4, seed, flip_dims=(2, 3), name="slice classifier")


@torch.inference_mode()
def slice_probabilities(model: SliceClassifier, slices: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probability (N,) that each slice holds the structure."""
    return np.concatenate([torch.softmax(model(torch.from_numpy(slices[i:i + batch])), 1)[:, 1].numpy()
                           for i in range(0, len(slices), batch)])


def predict_box(model: SliceClassifier, volume: np.ndarray, side: int, threshold: float = 0.5) -> tuple[np.ndarray, list[np.ndarray]]:
    """The 3D box (6,) of a z-scored (C, X, Y, Z) volume and the slice probabilities along each axis."""
    probs = [slice_probabilities(model, axis_slices(volume, a, side)) for a in range(3)]
    runs = [longest_run(p, threshold) for p in probs]
    return np.array([r[0] for r in runs] + [r[1] for r in runs], dtype=float), probs
