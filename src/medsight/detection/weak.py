"""Weakly supervised localisation: a classifier trained on image labels only ("holds a platelet") whose
class-activation map (CAM, Zhou et al. 2016) gives the points.

The network is the ImageNet EfficientNet-Lite0 cut at stride 16 (fine enough for objects of 10-30 pixels),
a 1x1 convolution that scores every location (the CAM itself: the linear classifier applied at each
position) and log-sum-exp pooling of the map into the image logit (a smooth maximum: an image is positive
when some location is). Candidates are the local maxima of the map, scored by their sigmoid.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CamLocaliser(nn.Module):
    """Images (B, 3, H, W) -> image logits (B,); ``score_map`` gives the CAM logits (B, H/16, W/16)."""

    stride = 16

    def __init__(self, pretrained: bool = True, sharpness: float = 4.0):
        super().__init__()
        from medsight.nets.efficientnet import efficientnet_lite0

        net = efficientnet_lite0(num_classes=2, pretrained=pretrained)
        self.encoder = net
        self.last_block = net._pyramid_blocks[net.feature_strides.index(self.stride)]
        self.classifier = nn.Conv2d(net.feature_channels[net.feature_strides.index(self.stride)], 1, 1)
        # zero start: every location scores 0, the image logit is 0 (loss log 2), not a random saturated value
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.sharpness = sharpness

    def score_map(self, x: Tensor) -> Tensor:
        """CAM logits (B, h, w) at stride 16."""
        f = self.encoder._stem(x)
        for index in range(self.last_block + 1):
            f = self.encoder._block(index, f)
        return self.classifier(f)[:, 0]

    def pool(self, scores: Tensor) -> Tensor:
        """Log-sum-exp pooling of a score map (B, h, w) into image logits (B,)."""
        r = self.sharpness
        flat = scores.flatten(1)
        return (torch.logsumexp(r * flat, dim=1) - math.log(flat.shape[1])) / r

    def forward(self, x: Tensor) -> Tensor:
        """Image logits (B,)."""
        return self.pool(self.score_map(x))


def map_peaks(scores: np.ndarray, stride: int, min_score: float = 0.05, radius: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of one CAM (h, w) (logits) as points ``(N, 2)`` (x, y in input pixels, the cell's centre)
    and their sigmoid scores, best first; maxima below ``min_score`` are dropped."""
    from scipy import ndimage

    prob = 1.0 / (1.0 + np.exp(-np.asarray(scores, np.float64)))
    peaks = (prob == ndimage.maximum_filter(prob, size=2 * radius + 1, mode="constant", cval=-1)) & (prob >= min_score)
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-prob[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    points = np.stack([(cols + 0.5) * stride, (rows + 0.5) * stride], axis=1) if len(rows) else np.zeros((0, 2))
    return points.astype(float), prob[rows, cols]


def points_to_boxes(points: np.ndarray, side: float) -> np.ndarray:
    """Square boxes of ``side`` pixels centred on points (N, 2) -> (N, 4) ``x0, y0, x1, y1``."""
    half = side / 2.0
    return np.concatenate([points - half, points + half], axis=1) if len(points) else np.zeros((0, 4))


def imagenet_batch(images: np.ndarray) -> Tensor:
    """uint8-range images (B, 3, H, W) -> ImageNet-normalised float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def train_cam_localiser(images: np.ndarray, labels: np.ndarray, epochs: int = 12, batch_size: int = 8,
                        lr: float = 1e-3, seed: int = 0, pretrained: bool = True) -> CamLocaliser:
    """Fine-tune :class:`CamLocaliser` on images (N, 3, H, W) (0-255) and image labels (N,) with flips;
    binary cross-entropy, AdamW, cosine learning rate (the backbone at a tenth of it)."""
    from medsight.training.optim import train_in_memory

    torch.manual_seed(seed)
    model = CamLocaliser(pretrained=pretrained)
    groups = [{"params": list(model.encoder.parameters()), "lr": lr * 0.1},
              {"params": list(model.classifier.parameters()), "lr": lr}]
    return train_in_memory(model, images, labels.astype(np.float32), F.binary_cross_entropy_with_logits, epochs,
                           batch_size, lr, 1e-4, seed, flip_dims=(2, 3), param_groups=groups, to_tensor=imagenet_batch,
                           name="weak localiser")


@torch.inference_mode()
def predict_maps(model: CamLocaliser, images: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Image probabilities (N,) and CAM logits (N, h, w)."""
    probs, maps = [], []
    for i in range(0, len(images), batch):
        scores = model.score_map(imagenet_batch(images[i:i + batch]))
        probs.append(torch.sigmoid(model.pool(scores)).numpy())
        maps.append(scores.numpy())
    return np.concatenate(probs), np.concatenate(maps)
