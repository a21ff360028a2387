"""Attention-based multiple-instance pooling (Ilse, Tomczak & Welling 2018).

One module serves two uses: an exam of several images (each image one instance) and classic MIL
(patches or tiles of one image as instances). Instances are feature vectors ``(B, N, F)``; a mask marks
the real ones when bags of different sizes are padded to ``N``.

>>> pool = AttentionMILPooling(in_features=8, hidden=4)
>>> pooled, weights = pool(torch.randn(2, 5, 8), mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool())
>>> weights = weights.detach()
>>> tuple(pooled.shape), [round(float(s), 4) for s in weights.sum(1)], float(weights[0, 3:].sum())
((2, 8), [1.0, 1.0], 0.0)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AttentionMILPooling"]


class AttentionMILPooling(nn.Module):
    """Attention pooling: ``a = softmax_n(w^T (tanh(V h_n) * sigmoid(U h_n)))``, pooled ``sum_n a_n h_n``.

    ``gated=False`` drops the sigmoid gate (Ilse's plain attention). ``forward(h, mask)`` returns the
    pooled features ``(B, F)`` and the attention weights ``(B, N)``, which sum to 1 over the valid
    instances and are 0 on masked ones (a bag with no valid instance pools to zeros).
    """

    def __init__(self, in_features: int, hidden: int = 128, gated: bool = True, dropout: float = 0.0):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gate = nn.Sequential(nn.Linear(in_features, hidden), nn.Sigmoid(), nn.Dropout(dropout)) if gated else None
        self.score = nn.Linear(hidden, 1)

    def forward(self, instances: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pooled features ``(B, F)`` and attention weights ``(B, N)`` for instances ``(B, N, F)``."""
        if instances.ndim != 3:
            raise ValueError(f"instances must be (B, N, F), got shape {tuple(instances.shape)}")
        hidden = self.attention(instances)
        if self.gate is not None:
            hidden = hidden * self.gate(instances)
        scores = self.score(hidden).squeeze(-1)  # (B, N)
        if mask is not None:
            if mask.shape != scores.shape:
                raise ValueError(f"mask {tuple(mask.shape)} does not fit instances {tuple(instances.shape)}")
            valid = mask.to(torch.bool)
            scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=1) * valid.to(scores.dtype)
        else:
            weights = torch.softmax(scores, dim=1)
        pooled = torch.bmm(weights.unsqueeze(1), instances).squeeze(1)
        return pooled, weights
