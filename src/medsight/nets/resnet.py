"""ResNet classifiers for 2D and 3D images (MONAI's ResNet as the encoder, a linear head on top).

>>> net = ResNet(spatial_dims=2, in_channels=1, num_classes=2, layers=(1, 1, 1, 1), widths=(8, 16, 32, 64))
>>> tuple(net.features(torch.zeros(4, 1, 28, 28)).shape), net.feature_dim
((4, 64), 64)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (used by the doctest)
from monai.networks.nets import ResNet as MonaiResNet
from torch import Tensor, nn

__all__ = ["RESNET_LAYERS", "ResNet"]

RESNET_LAYERS = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_EXPANSION = {"basic": 1, "bottleneck": 4}


class ResNet(nn.Module):
    """ResNet-18 family for 2D or 3D inputs ``(B, C, *spatial)``: ``features(x) -> (B, feature_dim)``.

    ``stem="small"`` is one 3x3 convolution at stride 1 without max-pooling (for 28x28 MedMNIST-sized
    images: the last stage sees 4x4); ``stem="imagenet"`` is the 7x7 stride-2 convolution and max-pool
    (for images of 128 pixels and more). ``forward`` gives logits ``(B, num_classes)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, block: str = "basic",
                 layers: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 stem: str = "small", dropout: float = 0.0):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if stem not in ("small", "imagenet"):
            raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
        if block not in _EXPANSION:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("layers and widths need 4 values (one per ResNet stage)")
        small = stem == "small"
        self.encoder = MonaiResNet(
            block=block, layers=list(layers), block_inplanes=list(widths), spatial_dims=spatial_dims,
            n_input_channels=in_channels, conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2,
            no_max_pool=small, num_classes=num_classes, feed_forward=False,
        )
        self.feature_dim = int(widths[-1]) * _EXPANSION[block]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Globally average-pooled features of the last stage, ``(B, feature_dim)``."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.dropout(self.features(x)))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Encoder parameters (for a lower learning rate than the head's)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Classifier parameters."""
        return list(self.head.parameters())

