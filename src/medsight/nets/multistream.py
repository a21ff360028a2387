"""Multi-stream (multi-scale) patch classifier: one small CNN per scale, features fused by an MLP.

Input layout: ``(B, S, C, *patch)``: for each of B points, S patches (one per scale, e.g. 32, 64 and
128 pixels around the point, each resized to the same patch size), C channels, then 2 or 3 spatial axes.
Stream s only ever sees scale s (its own weights), so fine texture and wide context are learned apart.

>>> net = MultiStreamNet(streams=3, spatial_dims=2, in_channels=1, num_classes=2, features=(8, 16))
>>> tuple(net(torch.zeros(4, 3, 1, 32, 32)).shape)
(4, 2)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import Tensor, nn

__all__ = ["MultiStreamNet", "StreamEncoder"]


class StreamEncoder(nn.Sequential):
    """Small CNN: per level two 3x3 conv-norm-ReLU (the first at stride 2 after level 0), global average pool."""

    def __init__(self, spatial_dims: int, in_channels: int, features: Sequence[int], norm: str = "batch"):
        layers: list[nn.Module] = []
        channels = in_channels
        for level, width in enumerate(features):
            for stride in (1 if level == 0 else 2, 1):
                layers.append(Convolution(spatial_dims, channels, width, strides=stride, kernel_size=3,
                                          act="relu", norm=norm, bias=False))
                channels = width
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        super().__init__(*layers, pool, nn.Flatten(1))
        self.out_features = channels


class MultiStreamNet(nn.Module):
    """``streams`` encoders, one per scale; concatenated features -> MLP -> logits ``(B, num_classes)``.

    ``features(x)`` gives the concatenated stream features ``(B, streams * features[-1])``.
    """

    def __init__(self, streams: int, spatial_dims: int, in_channels: int, num_classes: int,
                 features: Sequence[int] = (16, 32, 64), hidden: int = 128, dropout: float = 0.0,
                 norm: str = "batch"):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if streams < 1 or not features:
            raise ValueError("MultiStreamNet needs at least one stream and one feature level")
        self.streams, self.spatial_dims, self.in_channels = streams, spatial_dims, in_channels
        self.encoders = nn.ModuleList(StreamEncoder(spatial_dims, in_channels, features, norm) for _ in range(streams))
        self.feature_dim = streams * self.encoders[0].out_features
        self.fusion = nn.Sequential(
            nn.Linear(self.feature_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def features(self, x: Tensor) -> Tensor:
        """Per-stream features concatenated in stream order, ``(B, feature_dim)``."""
        expected = 3 + self.spatial_dims
        if x.ndim != expected or x.shape[1] != self.streams or x.shape[2] != self.in_channels:
            raise ValueError(f"MultiStreamNet expects (B, {self.streams}, {self.in_channels}, "
                             f"*{self.spatial_dims} spatial axes), got {tuple(x.shape)}")
        return torch.cat([encoder(x[:, s]) for s, encoder in enumerate(self.encoders)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` for patches ``(B, S, C, *patch)``."""
        return self.fusion(self.features(x))
