"""Volumes classified through 2D views: an exam of slices with attention pooling, and 2.5D orthogonal planes.

Both take the same input as a 3D network, ``(B, C, D, H, W)``, so a plan switches between them by its
``network`` entry alone (``small_resnet`` in 3D, ``slice_attention``, ``orthogonal_planes``):

- ``slice_attention``: every slice along ``axis`` is one image of the exam; one shared 2D encoder gives
  each slice a feature vector and gated attention (Ilse et al. 2018) pools them into one exam feature;
  ``attention(x)`` says which slices decided.
- ``orthogonal_planes``: the three planes through the centre of the volume (the point of a 2.5D lesion
  classifier), each through its own 2D stream, features concatenated (:class:`MultiStreamNet`).

>>> net = slice_attention(in_channels=1, num_classes=2, widths=(4, 4, 8, 8)).eval()
>>> tuple(net(torch.zeros(2, 1, 6, 16, 16)).shape), tuple(net.attention(torch.zeros(2, 1, 6, 16, 16)).shape)
((2, 2), (2, 6))
>>> tuple(orthogonal_planes(in_channels=1, num_classes=3, features=(4, 8))(torch.zeros(2, 1, 9, 9, 9)).shape)
(2, 3)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medsight.classification.networks import MemberEnsemble, small_resnet
from medsight.nets import AttentionMILPooling, MultiStreamNet, register_model

__all__ = ["OrthogonalPlanesNet", "SliceAttentionNet", "central_planes", "orthogonal_planes", "slice_attention"]


class SliceAttentionNet(nn.Module):
    """A 2D encoder over the slices of a volume, attention-pooled into one exam-level prediction."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int, axis: int = 0, hidden: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of the volume), got {axis}")
        self.encoder, self.axis = encoder, axis
        self.pool = AttentionMILPooling(feature_dim, hidden=hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def _slice_features(self, x: Tensor) -> Tensor:
        """(B, C, D, H, W) -> per-slice features (B, S, F) along ``axis``."""
        b, c = x.shape[:2]
        slices = x.movedim(2 + self.axis, 1)  # (B, S, C, h, w)
        s = slices.shape[1]
        feats = self.encoder.features(slices.reshape(b * s, c, *slices.shape[3:]))
        return feats.view(b, s, -1)

    def attention(self, x: Tensor) -> Tensor:
        """Attention weight of every slice, ``(B, S)`` (sums to 1 per exam)."""
        return self.pool(self._slice_features(x))[1]

    def features(self, x: Tensor) -> Tensor:
        """Attention-pooled exam features ``(B, F)``."""
        return self.pool(self._slice_features(x))[0]

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.dropout(self.features(x)))


def central_planes(x: Tensor) -> Tensor:
    """The three orthogonal planes through the centre of ``(B, C, D, H, W)``, resized to a common square.

    Returns ``(B, 3, C, S, S)`` with ``S = max(D, H, W)`` (planes of other shapes resized bilinearly).
    """
    d, h, w = x.shape[2:]
    planes = [x[:, :, d // 2], x[:, :, :, h // 2], x[:, :, :, :, w // 2]]
    side = max(d, h, w)
    planes = [p if p.shape[-2:] == (side, side) else
              nn.functional.interpolate(p, size=(side, side), mode="bilinear", align_corners=False) for p in planes]
    return torch.stack(planes, dim=1)


class OrthogonalPlanesNet(nn.Module):
    """2.5D: the three central orthogonal planes of a volume, one 2D stream each, fused."""

    def __init__(self, in_channels: int, num_classes: int, features: Sequence[int] = (16, 32, 64),
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        self.streams = MultiStreamNet(streams=3, spatial_dims=2, in_channels=in_channels, num_classes=num_classes,
                                      features=features, hidden=hidden, dropout=dropout)

    def features(self, x: Tensor) -> Tensor:
        """Concatenated stream features ``(B, 3 * features[-1])``."""
        return self.streams.features(central_planes(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.streams(central_planes(x))


def slice_attention(in_channels: int, num_classes: int, layers: Sequence[int] = (1, 1, 1, 1),
                    widths: Sequence[int] = (16, 32, 64, 128), axis: int = 0, hidden: int = 64,
                    dropout: float = 0.0, spatial_dims: int = 3, stem_stride: int = 1) -> SliceAttentionNet:
    """:class:`SliceAttentionNet` with a compact 2D ResNet as the slice encoder."""
    encoder = small_resnet(2, in_channels, num_classes, layers=layers, widths=widths, stem_stride=stem_stride)
    return SliceAttentionNet(encoder, int(widths[-1]), num_classes, axis=axis, hidden=hidden, dropout=dropout)


def orthogonal_planes(in_channels: int, num_classes: int, features: Sequence[int] = (16, 32, 64), hidden: int = 128,
                      dropout: float = 0.0, spatial_dims: int = 3, members: int = 1) -> nn.Module:
    """:class:`OrthogonalPlanesNet` (``spatial_dims`` is accepted for plan compatibility; it must be 3);
    ``members`` > 1 gives a :class:`MemberEnsemble` of that many independently initialised copies."""
    if spatial_dims != 3:
        raise ValueError("orthogonal planes are taken from volumes (spatial_dims=3)")
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    nets = [OrthogonalPlanesNet(in_channels, num_classes, features=features, hidden=hidden, dropout=dropout)
            for _ in range(members)]
    return MemberEnsemble(nets) if members > 1 else nets[0]


register_model("slice_attention", slice_attention)
register_model("orthogonal_planes", orthogonal_planes)
