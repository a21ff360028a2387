"""nnU-Net's plain-convolution U-Net, built from MONAI blocks, and the rules that size it from the data.

>>> plan = plan_unet(patch_size=(64, 64), spacing=(1.0, 1.0), base_features=8)
>>> plan["strides"]
[[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]]
>>> net = UNet(2, in_channels=1, out_channels=3, deep_supervision=True, **plan).eval()
>>> tuple(net(torch.zeros(1, 1, 64, 64)).shape)
(1, 3, 64, 64)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UnetBasicBlock, UnetOutBlock, UnetUpBlock
from torch import Tensor, nn

__all__ = ["UNet", "plan_unet", "receptive_field", "space_to_depth", "depth_to_space", "unet_divisor"]

_NORMS = {
    "instance": ("INSTANCE", {"affine": True}),
    "batch": ("BATCH", {}),
    "group": ("GROUP", {"num_groups": 8}),
}
_ACTS = {
    "leakyrelu": ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
    "relu": ("relu", {"inplace": True}),
    "prelu": ("prelu", {}),
    "gelu": ("gelu", {}),
}


def _choice(table: dict, name: str, what: str):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}: use one of {', '.join(table)}")
    return table[name]


def unet_divisor(strides: Sequence[Sequence[int]], stem: Sequence[int] | None = None) -> list[int]:
    """Per axis, the number that every input size must be a multiple of (the product of the strides, times
    the ``stem`` factor when the network folds its input, see :class:`UNet`)."""
    stem = stem or [1] * len(strides[0])
    return [math.prod(axis) * int(f) for axis, f in zip(zip(*strides), stem)]


def space_to_depth(x: Tensor, factors: Sequence[int]) -> Tensor:
    """Fold each block of ``factors`` voxels (one factor per axis) into channels: ``(B, C, *S)`` to
    ``(B, C * prod(f), *S / f)``, channel ``c * prod(f) + offset in the block`` (``pixel_unshuffle``'s order in 2D).

    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> torch.equal(space_to_depth(x, (2, 2)), torch.nn.functional.pixel_unshuffle(x, 2))
    True
    """
    b, c, *size = x.shape
    nd = len(size)
    split = [b, c] + [n for s, f in zip(size, factors) for n in (s // f, f)]
    order = [0, 1] + [3 + 2 * d for d in range(nd)] + [2 + 2 * d for d in range(nd)]
    return x.reshape(split).permute(order).reshape(b, c * math.prod(factors), *(s // f for s, f in zip(size, factors)))


def depth_to_space(x: Tensor, factors: Sequence[int]) -> Tensor:
    """The inverse of :func:`space_to_depth`: ``(B, C * prod(f), *S)`` to ``(B, C, *S * f)``.

    >>> x = torch.randn(2, 3, 4, 6, 8)
    >>> torch.equal(depth_to_space(space_to_depth(x, (2, 1, 2)), (2, 1, 2)), x)
    True
    """
    b, cf, *size = x.shape
    nd, block = len(size), math.prod(factors)
    x = x.reshape(b, cf // block, *factors, *size)
    order = [0, 1] + [n for d in range(nd) for n in (2 + nd + d, 2 + d)]
    return x.permute(order).reshape(b, cf // block, *(s * f for s, f in zip(size, factors)))


class UNet(nn.Module):
    """nnU-Net's PlainConvUNet: per stage two conv-norm-act (the first strided), transposed-conv decoder.

    ``features``, ``strides`` and ``kernel_sizes`` hold one entry per stage (``strides[0]`` all ones);
    strides and kernels are per axis, so anisotropic stages such as ``[1, 2, 2]`` or ``[3, 3, 1]`` work.
    Skip connections concatenate; every output head is a 1x1 convolution. ``decoder_convs=1`` keeps only
    the first conv-norm-act of each decoder stage (the one that reads the concatenated skip): a fifth less
    convolution work per step; no plan takes it yet (NOTES.md, session 13: within seed noise on Shenzhen).

    With ``deep_supervision`` the model returns, in ``train()`` mode, a list of logits: full resolution
    first, then each coarser decoder level except the lowest (nnU-Net computes that one and weighs it 0;
    here it has no head, so no parameter goes unused under DDP). In ``eval()`` mode, and always without
    deep supervision, it returns the full-resolution logits ``(B, out_channels, *spatial)``.
    Input sizes must be multiples of :func:`unet_divisor` of the strides (the planned patch sizes are).

    ``stem`` (a factor per axis, e.g. ``[2, 2]``) folds each block of input pixels into channels before the
    first stage (:func:`space_to_depth`) and unfolds the full-resolution head's ``out_channels * prod(stem)``
    logits back to one per pixel (:func:`depth_to_space`): no convolution runs at full resolution, where a
    CPU step spends about half its time (moving memory more than multiplying), yet every pixel keeps logits
    of its own (MONAI's U-Net likewise strides its first convolution). Not taken by any plan (NOTES.md,
    session 15: on DRIVE it reached Dice 0.80 sooner and ended 0.003 lower).
    Deep-supervision outputs then start at the stem's resolution.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, features: Sequence[int],
                 strides: Sequence[Sequence[int]], kernel_sizes: Sequence[Sequence[int]],
                 deep_supervision: bool = False, norm: str = "instance", act: str = "leakyrelu",
                 dropout: float | None = None, decoder_convs: int = 2, stem: Sequence[int] | None = None):
        super().__init__()
        _check_topology(spatial_dims, features, strides, kernel_sizes)
        if decoder_convs not in (1, 2):
            raise ValueError(f"decoder_convs must be 1 or 2, got {decoder_convs}")
        norm_name, act_name = _choice(_NORMS, norm, "norm"), _choice(_ACTS, act, "activation")
        self.spatial_dims, self.deep_supervision = spatial_dims, deep_supervision
        self.features = [int(f) for f in features]
        self.strides = [[int(s) for s in stage] for stage in strides]
        self.kernel_sizes = [[int(k) for k in stage] for stage in kernel_sizes]
        self.stem = [int(f) for f in stem] if stem else [1] * spatial_dims
        if len(self.stem) != spatial_dims or min(self.stem) < 1:
            raise ValueError(f"stem needs {spatial_dims} positive factors (one per axis), got {stem}")
        self.stem_block = math.prod(self.stem)
        self.divisor = unet_divisor(self.strides, self.stem)
        self.decoder_convs = int(decoder_convs)

        self.encoder = nn.ModuleList()
        channels = in_channels * self.stem_block
        for width, stride, kernel in zip(self.features, self.strides, self.kernel_sizes):
            self.encoder.append(UnetBasicBlock(spatial_dims, channels, width, kernel, stride, norm_name, act_name,
                                               dropout))
            channels = width
        # decoder[i] brings level i+1 up to level i (deepest first in forward)
        self.decoder = nn.ModuleList(
            UnetUpBlock(spatial_dims, self.features[i + 1], self.features[i], self.kernel_sizes[i], 1,
                        self.strides[i + 1], norm_name, act_name, dropout)
            for i in range(len(self.features) - 1)
        )
        if self.decoder_convs == 1:  # the first half of UnetBasicBlock: conv (no bias), dropout, norm, act
            for i, up in enumerate(self.decoder):
                up.conv_block = Convolution(spatial_dims, 2 * self.features[i], self.features[i],
                                            kernel_size=self.kernel_sizes[i], adn_ordering="DNA", act=act_name,
                                            norm=norm_name, dropout=dropout, bias=False)
        num_heads = max(1, len(self.features) - 2) if deep_supervision else 1
        self.heads = nn.ModuleList(
            UnetOutBlock(spatial_dims, self.features[i], out_channels * (self.stem_block if i == 0 else 1))
            for i in range(num_heads)
        )
        self.apply(_he_init)

    @property
    def num_stages(self) -> int:
        """Number of resolution stages (encoder levels, bottleneck included)."""
        return len(self.features)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits at full resolution, or the deep-supervision list in training mode."""
        self._check_input(x)
        if self.stem_block > 1:
            x = space_to_depth(x, self.stem)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        outputs: list[Tensor] = []
        for level in reversed(range(len(self.decoder))):
            x = self.decoder[level](x, skips[level])
            if level < len(self.heads) and (level == 0 or self._supervising()):
                outputs.append(self.heads[level](x))
        if len(self.encoder) == 1:
            outputs.append(self.heads[0](x))
        if self.stem_block > 1:
            outputs[-1] = depth_to_space(outputs[-1], self.stem)
        if self._supervising():
            return outputs[::-1]
        return outputs[-1]

    def _supervising(self) -> bool:
        return self.deep_supervision and self.training

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"UNet expects (B, C, *{self.spatial_dims} spatial axes), got {tuple(x.shape)}")
        if any(int(size) % d for size, d in zip(x.shape[2:], self.divisor)):
            raise ValueError(f"input size {tuple(x.shape[2:])} is not a multiple of {tuple(self.divisor)}")


def _check_topology(spatial_dims: int, features, strides, kernel_sizes) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not (len(features) == len(strides) == len(kernel_sizes)) or not features:
        raise ValueError("features, strides and kernel_sizes need one entry per stage")
    for what, stages in (("strides", strides), ("kernel_sizes", kernel_sizes)):
        if any(len(stage) != spatial_dims for stage in stages):
            raise ValueError(f"every entry of {what} needs {spatial_dims} values (one per axis)")
    if any(s != 1 for s in strides[0]):
        raise ValueError(f"the first stage keeps full resolution: strides[0] must be all 1, got {strides[0]}")


def _he_init(module: nn.Module) -> None:
    """Kaiming-normal convolutions (leaky slope 0.01) and zero biases, as nnU-Net initialises."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def receptive_field(strides: Sequence[Sequence[int]], kernel_sizes: Sequence[Sequence[int]],
                    stem: Sequence[int] | None = None) -> list[int]:
    """Per axis, the input extent one full-resolution output of :class:`UNet` sees (encoder and decoder).

    Each convolution widens it by ``(kernel - 1) * jump``, ``jump`` being the product of the strides above
    it; a stage has two convolutions, the encoder's first strided; a transposed convolution whose kernel
    equals its stride maps each output to one input and widens nothing. (With ``decoder_convs=1`` the
    extent depends on the output's position modulo the strides, so no single number describes it; the
    planning rules size the stages by the two-convolution layout.) A ``stem`` runs the whole network on
    blocks of ``stem`` input pixels: an output sees the blocks its block sees, ``stem`` times the extent.

    >>> receptive_field([[1, 1], [2, 2]], [[3, 3], [3, 3]])  # 1 + 2 + 2 | + 2 + 2*2 | + 2 + 2 (decoder)
    [15, 15]
    """
    field = []
    for axis in range(len(strides[0])):
        rf, jump, jumps = 1, 1, []
        for stride, kernel in zip(strides, kernel_sizes):
            rf += (kernel[axis] - 1) * jump
            jump *= stride[axis]
            rf += (kernel[axis] - 1) * jump
            jumps.append(jump)
        for level in reversed(range(len(strides) - 1)):
            rf += 2 * (kernel_sizes[level][axis] - 1) * jumps[level]
        field.append(rf * (int(stem[axis]) if stem else 1))
    return field


def plan_unet(patch_size: Sequence[int], spacing: Sequence[float], base_features: int = 32,
              max_features: int | None = None, min_feature_map: int = 4, max_stages: int = 7,
              stop_at_patch: bool = False) -> dict:
    """nnU-Net's topology rules: ``dict(features, strides, kernel_sizes)`` for a patch at a spacing.

    At each new stage, an axis is pooled (stride 2) when its feature map is at least ``2 * min_feature_map``
    (so it stays >= ``min_feature_map`` after pooling; a lone axis needs ``3 * min_feature_map``) and its
    current spacing is less than twice the finest current spacing, so anisotropic data pools in-plane first.
    An axis gets kernel 3 once its spacing is within 2x of the finest (kernel 1 before, nnU-Net's 3x3x1),
    and keeps it. Features double per stage from ``base_features`` up to ``max_features`` (320 in 3D,
    512 in 2D). At most ``max_stages`` stages; with ``stop_at_patch``, no stage is added once the
    :func:`receptive_field` covers the patch on every axis (what a CPU plan does in 2D, see
    ``medsight.tasks.segmentation``). Pad patches to :func:`unet_divisor` of the strides.
    """
    dims = len(patch_size)
    if dims not in (2, 3) or len(spacing) != dims:
        raise ValueError(f"patch_size {tuple(patch_size)} and spacing {tuple(spacing)} need 2 or 3 equal axes")
    if min(patch_size) < 1 or min(spacing) <= 0:
        raise ValueError(f"patch_size {tuple(patch_size)} and spacing {tuple(spacing)} must be positive")
    cap = max_features if max_features is not None else (512 if dims == 2 else 320)
    size, current = [float(s) for s in patch_size], [float(s) for s in spacing]
    kernel = [1] * dims
    strides: list[list[int]] = [[1] * dims]
    kernels: list[list[int]] = []
    while True:
        kernel = [3 if k == 3 or current[a] / min(current) < 2 else 1 for a, k in enumerate(kernel)]
        kernels.append(list(kernel))
        if len(strides) == max_stages:
            break
        if stop_at_patch and all(f >= p for f, p in zip(receptive_field(strides, kernels), patch_size)):
            break
        axes = _axes_to_pool(size, current, min_feature_map)
        if not axes:
            break
        strides.append([2 if a in axes else 1 for a in range(dims)])
        for a in axes:
            size[a], current[a] = math.ceil(size[a] / 2), current[a] * 2
    features = [min(base_features * 2**i, cap) for i in range(len(strides))]
    return {"features": features, "strides": strides, "kernel_sizes": kernels}


def _axes_to_pool(size: list[float], spacing: list[float], min_feature_map: int) -> list[int]:
    """Axes that may be halved at the next stage (big enough, and not much coarser than the finest)."""
    big = [a for a in range(len(size)) if size[a] >= 2 * min_feature_map]
    if not big:
        return []
    finest = min(spacing[a] for a in big)
    axes = [a for a in big if spacing[a] / finest < 2]
    if len(axes) == 1 and size[axes[0]] < 3 * min_feature_map:
        return []
    return axes
