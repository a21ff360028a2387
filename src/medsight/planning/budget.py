"""The time budget becomes a number: measure one training step here, derive the epochs."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from medsight.training.loop import CHECKPOINT_SHARE
from medsight.training.optim import build_optimizer
from medsight.training.step import build_model, optimizer_step

#: the planner's temporary folders (one timed case each) are named ``medsight-plan-<pid>-<random>``
PLAN_FOLDER_PREFIX = "medsight-plan-"


def _training_step(task, plan: dict, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable]:
    """The plan's network (seeded, built as the training loop builds it) in train mode, its optimiser, and
    ``step(x, y)``: the loop's :func:`~medsight.training.step.optimizer_step` on them (finished on a GPU before
    it returns)."""
    torch.manual_seed(0)
    model = build_model(task, plan, device)
    loss_fn = task.build_loss(plan)
    optimizer, _ = build_optimizer(model, plan, total_steps=10)
    model.train()

    def step(x, y) -> None:
        optimizer_step(model, loss_fn, optimizer, x, y, plan, device)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return model, optimizer, step


def measure_step_seconds(task, plan: dict, device: torch.device, repeats: int = 3, warmup: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` optimiser steps of the plan's network, loss and batch on ``device``, in
    the plan's precision, after ``warmup`` untimed steps (bfloat16 kernels on a CPU need two to be built).

    The minimum, as ``timeit`` takes it: noise only adds time. A U-Net step of Shenzhen's plan at base 16 on one
    core timed 0.91-1.09 s one step at a time, either side of the 0.94 s that decides its width (so one plan took
    base 16, the next base 8); the fastest of three timed 0.91-0.94 s in the same trials. It decides widths; the
    epoch count uses the steps timed inside an epoch (:func:`measure_epoch_parts`)."""
    _, _, step = _training_step(task, plan, device)
    x, y = task.example_batch(plan)
    times = []
    for i in range(repeats + warmup):
        t0 = time.perf_counter()
        step(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return min(times)


def epochs_for_budget(step_seconds: float, steps_per_epoch: int, budget_minutes: float,
                      overhead_fraction: float = 0.1, data_overhead: float = 1.15) -> int:
    """Epochs that fit ``budget_minutes``: steps x measured step time, plus data loading and validation."""
    per_epoch = steps_per_epoch * step_seconds * data_overhead
    usable = budget_minutes * 60.0 * (1.0 - overhead_fraction)
    return max(1, int(math.floor(usable / max(per_epoch, 1e-6))))


def measure_epoch_parts(task, manifest, plan: dict, device: torch.device, fingerprint: dict | None = None,
                        cycles: int = 4) -> dict[str, float]:
    """Seconds of what an epoch costs beside its optimiser steps, timed on one real case of median size
    preprocessed as training will have it: building one training batch (``data_per_step``: reading, sampling
    and augmenting patches; on a 2-core machine it runs between the steps), validating the case as the
    training loop validates (``validation_per_case``) and writing one checkpoint of the network with its
    optimiser's state after the timed steps (``checkpoint``: the loop writes one an epoch, paced to at most
    ``CHECKPOINT_SHARE`` of the steps' time), and the mean seconds of a step inside an epoch
    (``step_in_epoch``: a real batch built, then the step on it, ``cycles`` times after two untimed), which
    the epoch count uses; ``data_per_step`` is the building part of those cycles.

    A DRIVE epoch of 50 timed 0.90 s steps took 57 s, not the 52 s a flat 15 % for data gave, and a BraTS
    epoch 125 s for 116: the gap is these parts, which differ by data set."""
    from medsight.preprocessing.cache import CachedCases, preprocess_case
    from medsight.training.checkpoint import save_checkpoint

    case = _median_labelled_case(manifest, fingerprint)
    if case is None:
        return {}
    remove_abandoned_plan_folders()
    with tempfile.TemporaryDirectory(prefix=f"{PLAN_FOLDER_PREFIX}{os.getpid()}-") as tmp:
        out = Path(tmp)
        preprocess_case(case, manifest, plan, out)
        data = CachedCases(out, [case.id])
        model, optimizer, step = _training_step(task, plan, device)
        built, cycled, t0 = [], [], time.perf_counter()
        for i, (x, y) in enumerate(task.training_batches(data, plan, (int(plan.get("seed", 0)), 0), cycles + 2)):
            t1 = time.perf_counter()
            step(x, y)
            if i >= 2:
                built.append(t1 - t0)
                cycled.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
        t0 = time.perf_counter()
        task.validate(model, data, plan, device)
        validation_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        save_checkpoint(out / "timed.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "epoch": 0}, "timing")
        checkpoint_s = time.perf_counter() - t0
    return {"data_per_step": _figures(sum(built) / len(built)), "step_in_epoch": _figures(sum(cycled) / len(cycled)),
            "validation_per_case": _figures(validation_s), "checkpoint": _figures(checkpoint_s)}


def remove_abandoned_plan_folders() -> list[Path]:
    """Delete the temporary folders of plans whose process is gone (a ``kill -9`` skips their removal).

    Each holds one preprocessed case (megabytes); it is named after the process that made it.
    """
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PLAN_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(PLAN_FOLDER_PREFIX):].split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _figures(seconds: float, digits: int = 4) -> float:
    """``seconds`` to ``digits`` significant figures (a fixed number of decimals reads 0 on a fast machine)."""
    return float(f"{seconds:.{digits}g}")


def _median_labelled_case(manifest, fingerprint: dict | None):
    """The labelled case whose image has the median number of voxels (the first when sizes are unknown)."""
    cases = [c for c in manifest.cases if c.label is not None]
    if not cases:
        return None
    shapes = (fingerprint or {}).get("shapes")
    if shapes is None or len(shapes) != len(manifest.cases):
        return cases[0]
    size = {c.id: float(math.prod(s)) for c, s in zip(manifest.cases, shapes)}
    ranked = sorted(cases, key=lambda c: size[c.id])
    return ranked[len(ranked) // 2]


def schedule_epochs(plan: dict, budget_minutes: float, margin: float = 0.05) -> None:
    """Set ``plan["epochs"]`` (and, with measured epoch parts, ``plan["validation"]["every"]``) for the budget.

    With ``measured_epoch_parts`` (``step``, ``data_per_step``, ``validation_per_case``, ``checkpoint``,
    ``validation_cases``, ``mirrorings``, and ``step_in_epoch``, which replaces step + data where present):
    validation runs every k-th epoch, the smallest k that keeps it within
    ``validation.fraction_of_time`` of the training time; the end of training predicts the validation cases once
    more with every mirroring (the post-processing decision), which comes off the budget first, and
    ``margin`` of it is left for start-up. Without them: :func:`epochs_for_budget`'s flat allowances."""
    validation = plan.setdefault("validation", {})
    share = float(validation.get("fraction_of_time", 0.1))
    parts = plan.get("measured_epoch_parts")
    if not parts:
        plan["epochs"] = epochs_for_budget(plan["measured_step_seconds"], plan["steps_per_epoch"], budget_minutes,
                                           share)
        return
    per_step = parts.get("step_in_epoch") or parts["step"] + parts["data_per_step"]
    steps_s = plan["steps_per_epoch"] * per_step
    train_s = steps_s + min(parts["checkpoint"], CHECKPOINT_SHARE * steps_s)  # the loop paces its writes
    validate_s = parts["validation_cases"] * parts["validation_per_case"]
    every = max(1, math.ceil(validate_s / max(share * train_s, 1e-9)))
    final_s = validate_s * parts["mirrorings"]
    usable = budget_minutes * 60.0 * (1.0 - margin) - final_s
    plan["epochs"] = max(1, int(math.floor(usable / (train_s + validate_s / every))))
    validation["every"] = every


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
