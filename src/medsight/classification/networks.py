"""Compact ResNets for small images on a CPU budget: the ResNet family with a 3x3 stem of stride 1 or 2.

A 3D convolution at full 28^3 resolution costs about 30 times its 2D counterpart per image, so volumes
start with a stride-2 stem (28^3 -> 14^3): 8x fewer voxels in the costliest stage, and the shape cues of
a 28^3 object survive the halving. Registered as ``small_resnet`` in :func:`medsight.nets.create_model`.

>>> net = small_resnet(spatial_dims=3, in_channels=1, num_classes=2, widths=(4, 8, 8, 16), stem_stride=2)
>>> tuple(net(torch.zeros(2, 1, 28, 28, 28)).shape), net.encoder.conv1.stride
((2, 2), (2, 2, 2))
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch  # noqa: F401  (the doctest uses it)

from medsight.nets import register_model
from medsight.nets.resnet import ResNet

__all__ = ["EnsembleLoss", "MemberEnsemble", "small_resnet"]


def small_resnet(spatial_dims: int, in_channels: int, num_classes: int, layers: Sequence[int] = (2, 2, 2, 2),
                 widths: Sequence[int] = (16, 32, 64, 128), stem_stride: int = 1, dropout: float = 0.0,
                 members: int = 1) -> torch.nn.Module:
    """ResNet (basic blocks, ``layers`` per stage) with a 3x3 stem of stride ``stem_stride``; ``members`` > 1
    gives a :class:`MemberEnsemble` of that many independently initialised copies."""
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    config = dict(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, layers=layers,
                  widths=widths, stem_stride=stem_stride, dropout=dropout)
    if members > 1:
        return MemberEnsemble([_resnet(**config) for _ in range(members)])
    return _resnet(**config)


def _resnet(spatial_dims: int, in_channels: int, num_classes: int, layers: Sequence[int], widths: Sequence[int],
            stem_stride: int, dropout: float) -> ResNet:
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    net = ResNet(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, layers=layers,
                 widths=widths, stem="small", dropout=dropout)
    net.encoder.conv1.stride = (int(stem_stride),) * spatial_dims
    return net



class MemberEnsemble(torch.nn.Module):
    """Several independently initialised networks trained side by side on the same batches (a deep ensemble).

    Training mode: ``forward`` gives every member's logits ``(M, B, K)`` (:class:`EnsembleLoss` averages the
    members' losses, so each member learns on its own). Evaluation mode: the log of the members' mean
    softmax ``(B, K)``, so ``softmax(forward(x))`` is the ensemble's averaged probability.
    """

    def __init__(self, members: Sequence[torch.nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member logits (M, B, K) while training, else log mean probability (B, K)."""
        logits = torch.stack([m(x) for m in self.members])
        if self.training:
            return logits
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(len(self.members))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Members' pooled features concatenated, ``(B, M * F)``."""
        return torch.cat([m.features(x) for m in self.members], dim=1)


class EnsembleLoss(torch.nn.Module):
    """A classification loss applied to each member's logits ``(M, B, K)`` and averaged (plain logits pass through)."""

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of the members' losses."""
        if output.dim() == 3:
            return torch.stack([self.loss(o, target) for o in output]).mean()
        return self.loss(output, target)



register_model("small_resnet", small_resnet)
