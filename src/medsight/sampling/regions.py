"""Region-based targets (nnU-Net's region training): label patches become multi-hot region maps.

A plan with ``region_training`` true and ``regions`` (name -> label values, possibly overlapping, e.g.
BraTS ``whole_tumour=1,2,3,4; tumour_core=1,3,4; enhancing=4``) trains one sigmoid output per region.
The label patch is cut and augmented as usual (nearest / one-hot resampling keeps it a label map);
only then does one table look-up turn it into the (B, R, *patch) float target.

>>> import torch
>>> table = region_table([[1, 2], [2]])
>>> labels_to_regions(torch.tensor([[[0, 1, 2]]]), table)[0].tolist()
[[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

__all__ = ["labels_to_regions", "region_table", "region_training", "region_values"]


def region_training(plan: Mapping[str, Any]) -> bool:
    """True when the plan trains one sigmoid output per region (a plan without the entry trains softmax)."""
    return bool(plan.get("region_training")) and bool(plan.get("regions"))


def region_values(plan: Mapping[str, Any]) -> list[list[int]]:
    """The label values of each region, in the plan's region order."""
    return [[int(v) for v in values] for values in plan["regions"].values()]


def region_table(regions: Sequence[Sequence[int]], num_values: int | None = None) -> torch.Tensor:
    """(V, R) float table: row ``v`` is the multi-hot region membership of label value ``v``."""
    largest = max((int(v) for values in regions for v in values), default=0)
    size = max(largest + 1, int(num_values or 0))
    table = torch.zeros((size, len(regions)), dtype=torch.float32)
    for r, values in enumerate(regions):
        table[[int(v) for v in values], r] = 1.0
    return table


def labels_to_regions(labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, 1, *s) integer label maps -> (B, R, *s) float multi-hot region maps (values beyond the table refused)."""
    index = labels[:, 0].long()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= table.shape[0]):
        raise ValueError(f"label values {int(index.min())}..{int(index.max())} outside the region table "
                         f"0..{table.shape[0] - 1}")
    return table[index].movedim(-1, 1).contiguous()
