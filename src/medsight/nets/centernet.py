"""Dense detection networks (CenterNet-style): per class a centre heatmap, plus object size and sub-pixel offset.

One output tensor ``(B, K + 2 * nd, *grid)`` at ``output_stride`` of the input: channels ``0..K-1`` are the
centre-heatmap logits (one per class), the next ``nd`` the log object size in grid cells per array axis,
the last ``nd`` the offset of the centre from its cell corner, in cells (see :mod:`medsight.detection`).
The grid has ``ceil(size / stride)`` cells per axis, so any input size works.

Two encoders:

- ``efficientnet_lite0``: the ImageNet EfficientNet-Lite0 (2D, RGB-normalised input) with a small
  feature-pyramid decoder (strides 32 -> 4, ``decoder_channels`` wide); ``frozen_units`` first units
  (stem, MBConv blocks) keep their ImageNet weights (6: everything up to stride 8, which makes a CPU
  training step about 1.5x cheaper);
- ``unet``: the foundation's U-Net encoder and decoder (2D or 3D, any channels), decoded down to the
  first level whose stride is at most ``output_stride``.

>>> net = centernet(num_classes=3, encoder="efficientnet_lite0", pretrained=False).eval()
>>> tuple(net(torch.zeros(1, 3, 96, 128)).shape)
(1, 7, 24, 32)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsight.errors import InputError
from medsight.nets.registry import register_model

__all__ = ["CenterNet", "PyramidDecoder", "UNetTrunk", "centernet", "HEATMAP_PRIOR"]

#: initial foreground probability of the heatmap logits (CenterNet/RetinaNet prior: bias -2.19)
HEATMAP_PRIOR = 0.1


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class PyramidDecoder(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, upsample-and-add from the coarsest map, one 3x3 smoothing."""

    def __init__(self, in_channels: Sequence[int], channels: int):
        super().__init__()
        self.laterals = nn.ModuleList(_conv_bn_relu(c, channels, 1) for c in in_channels)
        self.smooth = _conv_bn_relu(channels, channels, 3)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        """Fuse ``maps`` (finest first) into one map at the finest one's resolution."""
        x = self.laterals[-1](maps[-1])
        for lateral, fine in zip(reversed(self.laterals[:-1]), reversed(maps[:-1])):
            x = lateral(fine) + F.interpolate(x, size=fine.shape[2:], mode="nearest")
        return self.smooth(x)


class EfficientNetTrunk(nn.Module):
    """EfficientNet-Lite0 feature maps at strides 4..32 fused by a :class:`PyramidDecoder` at stride 4."""

    def __init__(self, in_channels: int = 3, pretrained: bool = True, decoder_channels: int = 64,
                 frozen_units: int = 0):
        super().__init__()
        from medsight.nets.efficientnet import efficientnet_lite0

        self.encoder = efficientnet_lite0(in_channels=in_channels, num_classes=1, pretrained=pretrained)
        self.encoder.head = nn.Identity()  # unused classifier: no parameter without a gradient under DDP
        self.encoder.backbone._conv_head = nn.Identity()
        self.encoder.backbone._bn1 = nn.Identity()
        if frozen_units:  # the first units (stem, blocks) keep their ImageNet weights and statistics
            self.encoder.freeze_backbone(len(self.encoder.backbone_units()) - int(frozen_units))
        self.decoder = PyramidDecoder(self.encoder.feature_channels[1:], decoder_channels)
        self.out_channels = decoder_channels
        self.stride = [4, 4]
        self.divisor = [1, 1]

    def forward(self, x: Tensor) -> Tensor:
        """Decoded features at stride 4."""
        return self.decoder(self.encoder.feature_maps(x)[1:])

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The pretrained encoder's parameters (frozen ones included; the optimiser skips those)."""
        return list(self.encoder.parameters())


class UNetTrunk(nn.Module):
    """The foundation U-Net's encoder and decoder, stopped at the first level of stride <= ``output_stride``."""

    def __init__(self, spatial_dims: int, in_channels: int, features: Sequence[int],
                 strides: Sequence[Sequence[int]], kernel_sizes: Sequence[Sequence[int]], output_stride: int = 4,
                 norm: str = "instance"):
        super().__init__()
        from medsight.nets.unet import UNet, unet_divisor

        unet = UNet(spatial_dims, in_channels, 1, features, strides, kernel_sizes, deep_supervision=False, norm=norm)
        cumulative = [[math.prod(s[a] for s in strides[: i + 1]) for a in range(spatial_dims)]
                      for i in range(len(strides))]
        self.level = max(i for i, c in enumerate(cumulative) if max(c) <= output_stride)
        self.encoder = unet.encoder
        self.decoder = nn.ModuleList(unet.decoder[self.level:])  # levels >= self.level, deepest last
        self.out_channels = int(features[self.level])
        self.stride = cumulative[self.level]
        self.divisor = unet_divisor(strides)

    def forward(self, x: Tensor) -> Tensor:
        """Decoded features at ``self.stride``."""
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](x, skips[self.level + i])
        return x

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every trunk parameter (nothing here is pretrained)."""
        return list(self.parameters())


class CenterNet(nn.Module):
    """A trunk (encoder-decoder) and three heads: centre heatmap (K), log size (nd), offset (nd)."""

    def __init__(self, trunk: nn.Module, num_classes: int, spatial_dims: int, head_channels: int = 64):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.trunk = trunk
        self.num_classes, self.spatial_dims = int(num_classes), int(spatial_dims)
        self.stride = [int(s) for s in trunk.stride]
        self.divisor = [int(d) for d in trunk.divisor]

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(conv(trunk.out_channels, head_channels, 3, padding=1), nn.ReLU(inplace=True),
                                 conv(head_channels, out, 1))

        self.heatmap = head(num_classes)
        self.size = head(spatial_dims)
        self.offset = head(spatial_dims)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, K + 2 nd, *ceil(spatial / stride))``: heatmap logits, log sizes, offsets."""
        pad = [(-int(s)) % d for s, d in zip(x.shape[2:], self.divisor)] if max(self.divisor) > 1 else []
        if any(pad):  # pad at the end only: cell coordinates stay those of the unpadded image
            grid = [math.ceil(int(s) / st) for s, st in zip(x.shape[2:], self.stride)]
            f = self.trunk(F.pad(x, [p for q in reversed(pad) for p in (0, q)]))
            f = f[(slice(None), slice(None), *[slice(0, g) for g in grid])]
        else:  # no padding (the EfficientNet trunk pads per layer): traced shapes stay dynamic for ONNX
            f = self.trunk(x)
        return torch.cat([self.heatmap(f), self.size(f), self.offset(f)], dim=1)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder-decoder trunk (lower learning rate when pretrained)."""
        return self.trunk.backbone_parameters()

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters outside :meth:`backbone_parameters` (new decoder layers and the heads)."""
        backbone = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]


def centernet(num_classes: int, encoder: str = "efficientnet_lite0", spatial_dims: int = 2, in_channels: int = 3,
              pretrained: bool = True, decoder_channels: int = 64, head_channels: int = 64, output_stride: int = 4,
              frozen_units: int = 0,
              features: Sequence[int] | None = None, strides: Sequence[Sequence[int]] | None = None,
              kernel_sizes: Sequence[Sequence[int]] | None = None, norm: str = "instance") -> CenterNet:
    """A dense centre/size/offset detector with the named encoder (``efficientnet_lite0`` or ``unet``)."""
    if encoder == "efficientnet_lite0":
        if spatial_dims != 2:
            raise InputError(f"the efficientnet_lite0 encoder is 2D, asked for spatial_dims={spatial_dims}",
                             fix='use encoder "unet" for 3D images')
        trunk: nn.Module = EfficientNetTrunk(in_channels, pretrained, decoder_channels, frozen_units)
    elif encoder == "unet":
        if features is None or strides is None or kernel_sizes is None:
            raise InputError("the unet encoder needs features, strides and kernel_sizes (plan_unet gives them)")
        trunk = UNetTrunk(spatial_dims, in_channels, features, strides, kernel_sizes, output_stride, norm)
    else:
        raise InputError(f"unknown detection encoder {encoder!r}", fix="use efficientnet_lite0 or unet")
    return CenterNet(trunk, num_classes, spatial_dims, head_channels)


register_model("centernet", centernet)
