"""The network and one optimiser step as training takes them: the loop runs them, and the plan times them
(``planning/budget``)."""
from __future__ import annotations

import torch
from torch import nn

from medsight.training.precision import as_float, autocast

#: gradients are clipped to this global norm before every step (nnU-Net's 12)
GRAD_CLIP_NORM = 12.0


def build_model(task, plan: dict, device: torch.device) -> nn.Module:
    """The plan's network on ``device``, in channels-last memory where a 2D plan asks (seed torch first)."""
    model = task.build_network(plan).to(device)
    if plan.get("channels_last") and plan["dims"] == 2:
        model = model.to(memory_format=torch.channels_last)
    return model


def optimizer_step(model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: torch.Tensor, y, plan: dict,
                   device: torch.device, scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Move the batch to ``device`` (channels-last where the plan asks), forward in the plan's precision, the
    loss in float32, backward (scaled with ``scaler``), clip, step; returns the detached loss."""
    x = x.to(device, non_blocking=True)
    if plan.get("channels_last") and plan["dims"] == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(device, non_blocking=True) if torch.is_tensor(y) else y
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, plan):
        outputs = model(x)
    loss = loss_fn(as_float(outputs), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        optimizer.step()
    return loss.detach()
