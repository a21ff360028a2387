"""An exponential moving average of the weights (model EMA), validated and kept in place of the raw weights.

A high learning rate makes the raw weights wander around a good solution from one step to the next; their
moving average sits nearer its centre. With ``plan["optimizer"]["ema"] = d`` the loop keeps, after every
optimiser step, ``avg <- avg + (1 - d_n) (w - avg)`` over parameters and floating-point buffers (batch-norm
statistics; integer buffers are copied), where ``d_n = min(d, (1 + n) / (10 + n))`` after ``n`` updates, so
that the first steps, whose weights are soon left behind, do not weigh on the average for long (the warm-up
of timm's ``ModelEmaV2``). Validation, the best and the final checkpoint use the average; the latest
checkpoint keeps both, so a resumed run continues both exactly.

>>> net = torch.nn.Linear(1, 1, bias=False)
>>> ema = weight_average(net, 0.9)
>>> _ = net.weight.data.fill_(1.0); ema.update_parameters(net)   # the first update copies
>>> _ = net.weight.data.fill_(0.0); ema.update_parameters(net)   # n = 1: d = 2 / 11
>>> round(float(ema.module.weight.detach()), 4)
0.1818
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from medsight.errors import PlanError

__all__ = ["weight_average", "ema_decay"]


def ema_decay(plan: dict, path: Path | None = None) -> float | None:
    """The plan's EMA decay (``plan["optimizer"]["ema"]``), or None when it keeps no average.

    Raises PlanError (naming the plan file ``path`` when given) unless the decay is in (0, 1)."""
    value = plan.get("optimizer", {}).get("ema")
    if value is None or value is False or value == 0:
        return None
    try:
        decay = float(value)
    except (TypeError, ValueError):
        decay = float("nan")
    if not 0.0 < decay < 1.0:
        raise PlanError(f"optimizer.ema must be a decay in (0, 1), got {value!r}", path=path,
                        fix="use 0.99, or remove the key")
    return decay


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of ``model`` whose ``update_parameters(model)`` moves it towards ``model`` (see the module)."""

    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = float(updates)
        keep = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - keep)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
