"""Region predictions back to one label map (nnU-Net's ``regions_class_order``), and the rule for its default.

A region-training network predicts one mask per region (sigmoid > 0.5); the written mask is a normal
label map, painted region by region:

- **Order**: largest region first (most label values; ties keep the plan's order), so every region is
  painted before the regions nested in it and the smallest region holding a voxel wins.
- **Value**: a region paints the smallest of its label values that belongs to no region painted after
  it; when there is none (a region made only of its sub-regions), its smallest value. BraTS
  (whole 1,2,3,4; core 1,3,4; enhancing 4): whole -> 2, core -> 1, enhancing -> 4, as nnU-Net.
- **Override**: ``plan["regions_class_order"]``, one label value per region in the plan's region order
  (nnU-Net's dataset.json entry), replaces the values; each must belong to its region.

For nested or disjoint regions the regions of the painted map equal the predicted masks whenever the
masks are consistent (each predicted sub-region inside its super-regions) and some label value has
exactly that membership; a voxel predicted in a sub-region but outside its super-region is claimed by
the sub-region and so joins the super-region too.

>>> regions = {"whole": [1, 2, 3, 4], "core": [1, 3, 4], "enhancing": [4]}
>>> default_class_order(regions)
[2, 1, 4]
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from medsight.errors import PlanError

__all__ = ["check_class_order", "class_order", "default_class_order", "paint_order", "paint_regions",
           "region_masks"]


def paint_order(regions: Mapping[str, Sequence[int]]) -> list[int]:
    """Region indices in painting order: most label values first, ties in the plan's order."""
    sizes = [len(set(values)) for values in regions.values()]
    return sorted(range(len(sizes)), key=lambda i: -sizes[i])


def default_class_order(regions: Mapping[str, Sequence[int]]) -> list[int]:
    """The label value each region paints (plan's region order), by the rule of the module docstring."""
    sets = [{int(v) for v in values} for values in regions.values()]
    order = paint_order(regions)
    values = [0] * len(sets)
    for position, i in enumerate(order):
        later = set().union(*(sets[j] for j in order[position + 1:]))
        own = sets[i] - later
        values[i] = min(own) if own else min(sets[i])
    return values


def check_class_order(regions: Mapping[str, Sequence[int]], order: Sequence[int], path: Any = None) -> None:
    """Refuse a ``regions_class_order`` that does not give each region one of its own label values."""
    names = list(regions)
    if len(order) != len(names):
        raise PlanError(f"regions_class_order has {len(order)} values for {len(names)} regions ({', '.join(names)})",
                        path=path, fix="give one label value per region, in the order of plan['regions']")
    wrong = [f"{n}={v}" for n, v in zip(names, order) if int(v) not in {int(x) for x in regions[n]}]
    if wrong:
        raise PlanError(f"regions_class_order paints {', '.join(wrong)}, a value outside the region", path=path,
                        fix="each region must paint one of its own label values")


def class_order(plan: Mapping[str, Any]) -> list[int]:
    """The plan's ``regions_class_order``, or the default rule's values."""
    explicit = plan.get("regions_class_order")
    if explicit:
        check_class_order(plan["regions"], explicit)
        return [int(v) for v in explicit]
    return default_class_order(plan["regions"])


def paint_regions(masks: np.ndarray, regions: Mapping[str, Sequence[int]], values: Sequence[int],
                  dtype: Any = np.uint8) -> np.ndarray:
    """(R, *s) boolean region masks -> (*s) label map: regions painted largest first with ``values``."""
    label = np.zeros(masks.shape[1:], dtype=dtype)
    for i in paint_order(regions):
        label[np.asarray(masks[i], dtype=bool)] = values[i]
    return label


def region_masks(label: np.ndarray, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """(*s) label map -> (R, *s) boolean masks, one per region."""
    return np.stack([np.isin(label, [int(v) for v in values]) for values in regions.values()])
