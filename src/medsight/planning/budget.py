"""The time budget becomes a number: measure one training step here, derive the epochs."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from medsight.training.optim import build_optimizer
from medsight.training.precision import as_float, autocast


def measure_step_seconds(task, plan: dict, device: torch.device, repeats: int = 3, warmup: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` optimiser steps of the plan's network, loss and batch on ``device``, in
    the plan's precision, after ``warmup`` untimed steps (bfloat16 kernels on a CPU need two to be built).

    The minimum, as ``timeit`` takes it: noise only adds time. A U-Net step of Shenzhen's plan at base 16 on one
    core timed 0.91-1.09 s one step at a time, either side of the 0.94 s that decides its width (so one plan took
    base 16, the next base 8); the fastest of three timed 0.91-0.94 s in the same trials."""
    torch.manual_seed(0)
    model = task.build_network(plan).to(device)
    if plan.get("channels_last") and plan["dims"] == 2:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = task.build_loss(plan)
    optimizer, _ = build_optimizer(model, plan, total_steps=10)
    x, y = task.example_batch(plan)
    x = x.to(device)
    y = y.to(device) if torch.is_tensor(y) else y
    model.train()
    times = []
    for i in range(repeats + warmup):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, plan):
            outputs = model(x)
        loss = loss_fn(as_float(outputs), y)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return min(times)


def epochs_for_budget(step_seconds: float, steps_per_epoch: int, budget_minutes: float,
                      overhead_fraction: float = 0.1, data_overhead: float = 1.15) -> int:
    """Epochs that fit ``budget_minutes``: steps x measured step time, plus data loading and validation."""
    per_epoch = steps_per_epoch * step_seconds * data_overhead
    usable = budget_minutes * 60.0 * (1.0 - overhead_fraction)
    return max(1, int(math.floor(usable / max(per_epoch, 1e-6))))


def widest_that_fits(candidates: Sequence[Sequence[int]], per_sample_seconds: Callable[[Sequence[int]], float],
                     num_train: int, budget_seconds: float, min_epochs: float) -> tuple[int, float]:
    """Index of the widest candidate (narrowest first) that trains ``min_epochs`` epochs in the budget.

    Returns ``(index, epochs the chosen candidate gets)``; the narrowest when none reaches ``min_epochs``.
    Stops timing at the first candidate that does not fit (cost grows with width).
    """
    chosen, chosen_epochs = 0, 0.0
    for index, widths in enumerate(candidates):
        epochs = budget_seconds / max(per_sample_seconds(widths) * max(num_train, 1), 1e-9)
        if index and epochs < min_epochs:
            break
        chosen, chosen_epochs = index, epochs
    return chosen, chosen_epochs
