"""Optimiser and learning-rate schedule from the plan (AdamW or SGD; poly or cosine, with warm-up)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from medsight.errors import PlanError


#: devices whose torch has fused Adam/AdamW kernels (CUDA since torch 2.0, CPU since torch 2.4)
FUSED_DEVICES = ("cpu", "cuda") if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) else ("cuda",)


def _materialised(params: Iterable) -> list:
    """Parameters, or parameter groups, as lists (generators are read once)."""
    return [dict(p, params=list(p["params"])) if isinstance(p, dict) else p for p in params]


def _fusable(params: list) -> bool:
    """Whether every tensor of ``params`` (tensors or groups) is a floating tensor on a :data:`FUSED_DEVICES`."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return bool(tensors) and all(t.device.type in FUSED_DEVICES and t.is_floating_point() for t in tensors)


def _fused_where_possible(optimizer_class: type, params: Iterable, **kwargs) -> torch.optim.Optimizer:
    """``optimizer_class`` over ``params`` with torch's fused kernel where every parameter's device has one
    (``fused=None``, torch's default loop, elsewhere)."""
    params = _materialised(params)
    return optimizer_class(params, fused=_fusable(params) or None, **kwargs)


def adamw(params: Iterable, **kwargs) -> torch.optim.AdamW:
    """AdamW (``kwargs`` as torch's) in torch's fused kernel where every parameter's device has one: one pass
    over all tensors instead of a loop over them (a DRIVE U-Net step 5-9 % faster on a CPU; the same
    algorithm, rounded differently). Every AdamW medsight trains or times with is made here."""
    return _fused_where_possible(torch.optim.AdamW, params, **kwargs)


def adam(params: Iterable, **kwargs) -> torch.optim.Adam:
    """Adam, fused as :func:`adamw` is."""
    return _fused_where_possible(torch.optim.Adam, params, **kwargs)


def _param_groups(model: nn.Module, opt: dict) -> list[dict]:
    """One group, or a lower learning rate for a pretrained backbone (``backbone_lr_factor``)."""
    lr = float(opt["lr"])
    factor = opt.get("backbone_lr_factor")
    if factor and hasattr(model, "backbone_parameters") and hasattr(model, "head_parameters"):
        return [{"params": [p for p in model.backbone_parameters() if p.requires_grad], "lr": lr * float(factor)},
                {"params": [p for p in model.head_parameters() if p.requires_grad], "lr": lr}]
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def build_optimizer(model: nn.Module, plan: dict, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The plan's optimiser over ``model`` and a per-step schedule of ``total_steps``."""
    opt = plan["optimizer"]
    groups = _param_groups(model, opt)
    name = opt["name"].lower()
    if name == "adamw":
        optimizer = adamw(groups, lr=float(opt["lr"]), weight_decay=float(opt.get("weight_decay", 1e-4)))
    elif name == "adam":
        optimizer = adam(groups, lr=float(opt["lr"]), weight_decay=float(opt.get("weight_decay", 0.0)))
    elif name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=float(opt["lr"]), momentum=float(opt.get("momentum", 0.99)),
                                    nesterov=True, weight_decay=float(opt.get("weight_decay", 3e-5)))
    else:
        raise PlanError(f"unknown optimizer {opt['name']!r}", fix="use adamw, adam or sgd")
    warmup = int(opt.get("warmup_steps", 0))
    schedule = opt.get("schedule", "poly")
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "poly":
            return (1 - t) ** 0.9
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if schedule == "constant":
            return 1.0
        raise PlanError(f"unknown schedule {schedule!r}", fix="use poly, cosine or constant")

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cosine_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, base_lr: float, step: int, total: int) -> None:
    """One optimiser step on ``loss`` at the cosine-annealed learning rate of ``step`` out of ``total``."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def train_in_memory(model: nn.Module, x, y, loss_fn, epochs: int, batch_size: int, lr: float,
                    weight_decay: float, seed: int, flip_dims: tuple[int, ...] = (), param_groups: list[dict] | None = None,
                    to_tensor=None, name: str | None = None) -> nn.Module:
    """Train ``model`` on in-memory arrays ``x`` and targets ``y`` (numpy), shuffled each epoch, each of
    ``flip_dims`` flipped with probability 1/2 per batch; AdamW with a cosine learning rate from ``lr`` (or
    from each of ``param_groups``' own ``lr``). ``to_tensor`` turns a numpy batch into the input tensor
    (default ``torch.from_numpy``); ``loss_fn(output, target tensor)``. With ``name``, one line per epoch
    (mean loss, seconds) goes to stdout. Returns the model in eval mode."""
    import time

    import numpy as np

    rng = np.random.default_rng(seed)
    groups = param_groups if param_groups is not None else [{"params": list(model.parameters()), "lr": lr}]
    optimizer = adamw(groups, lr=lr, weight_decay=weight_decay)
    base = [g["lr"] for g in optimizer.param_groups]
    convert = to_tensor or torch.from_numpy
    steps = max(1, math.ceil(len(x) / batch_size))
    total = steps * epochs
    model.train()
    losses, start = [], time.perf_counter()
    for step in range(total):
        if step % steps == 0:
            order = rng.permutation(len(x))
        idx = order[(step % steps) * batch_size:(step % steps + 1) * batch_size]
        xb = convert(x[idx])
        dims = [d for d in flip_dims if rng.random() < 0.5]
        if dims:
            xb = torch.flip(xb, dims)
        for group, lr0 in zip(optimizer.param_groups, base):
            group["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * step / total))
        loss = loss_fn(model(xb), torch.from_numpy(y[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if name and (step + 1) % steps == 0:
            print(f"{name} epoch {(step + 1) // steps}/{epochs}: train_loss {np.mean(losses[-steps:]):.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return model.eval()
