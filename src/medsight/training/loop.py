"""The training loop shared by every task: seeds, schedule, checkpoints every epoch, exact resume, logs."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from medsight.datasets.manifest import atomic_write_text
from medsight.planning.plan import plan_hash
from medsight.preprocessing.cache import CachedCases
from medsight.progress import bars_enabled
from medsight.progress import progress as progress_bar
from medsight.tasks.base import Task
from medsight.tempfiles import append_line, remove_stale_temporaries
from medsight.training.checkpoint import load_checkpoint, save_checkpoint
from medsight.training.distributed import DistContext, barrier, mean_over_processes, unwrap, wrap_model
from medsight.training.ema import ema_decay, weight_average
from medsight.training.optim import build_optimizer
from medsight.training.precision import uses_grad_scaler
from medsight.training.step import build_model, optimizer_step

LATEST = "checkpoint_latest.pt"
FINAL = "checkpoint_final.pt"
BEST = "checkpoint_best.pt"
#: the latest checkpoint (what ``--resume`` continues from) is written after the first epoch, after the last,
#: and otherwise once the training since the previous write took at least 1/CHECKPOINT_SHARE times that write:
#: every epoch on a CPU (a 25 s epoch, a 0.2 s write), every few seconds where epochs take less than a write
#: (a GPU on 28 x 28 images: 0.4 s epochs, 0.3 s to write and hash the weights and Adam's moments)
CHECKPOINT_SHARE = 0.05


def _read_log(path: Path, before_epoch: int) -> list[dict]:
    """Log lines of epochs before ``before_epoch`` (the rest belong to a run that was cut off)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a kill
        if row.get("epoch", -1) < before_epoch:
            rows.append(row)
    return rows


def train_fold(task: Task, plan: dict, train_data: CachedCases, val_data: CachedCases | None, fold_dir: Path,
               device: torch.device, resume: bool = False, ctx: DistContext | None = None,
               progress: bool = True) -> Path:
    """Train one fold to ``plan["epochs"]`` epochs in ``fold_dir``; return the final checkpoint's path.

    With ``resume`` the latest checkpoint is loaded and training continues after the epoch it holds (at most
    :data:`CHECKPOINT_SHARE`-paced writes behind the kill); on a CPU the result equals an uninterrupted run
    with the same seed (per-epoch seeding of data and torch).
    """
    ctx = ctx or DistContext()
    fold_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        remove_stale_temporaries(fold_dir)  # a checkpoint write cut by a kill -9
    p_hash = plan_hash(plan)
    seed = int(plan["seed"])
    epochs, steps = int(plan["epochs"]), int(plan["steps_per_epoch"])
    torch.manual_seed(seed)
    model = build_model(task, plan, device)
    loss_fn = task.build_loss(plan)
    model = wrap_model(model, ctx, device)  # before the optimiser: wrapping replaces batch-norm modules
    optimizer, scheduler = build_optimizer(unwrap(model), plan, total_steps=epochs * steps)
    scaler = torch.amp.GradScaler("cuda") if uses_grad_scaler(device, plan) else None
    decay = ema_decay(plan)
    average = weight_average(unwrap(model), decay) if decay else None
    start_epoch, best_score = 0, float("-inf")
    latest = fold_dir / LATEST
    if resume and not latest.is_file():
        if (fold_dir / FINAL).is_file():
            return fold_dir / FINAL
        # killed before its first checkpoint: nothing was kept, so it starts again (as nnU-Net's --c does)
        logging.getLogger("medsight.train").warning(f"{fold_dir}: no checkpoint to resume from: training from "
                                                    "the start")
        resume = False
    if resume:
        state = load_checkpoint(latest, p_hash)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if average is not None:  # the plan hash matched, so this run kept an average too
            average.load_state_dict(state["ema"])
        start_epoch = int(state["epoch"]) + 1
        best_score = float(state.get("best_score", float("-inf")))

    def kept() -> torch.nn.Module:
        """The weights validated and kept in the best and final checkpoints: the average, or the model's own."""
        return average.module if average is not None else unwrap(model)

    log_path = fold_dir / "log.jsonl"
    history = _read_log(log_path, start_epoch) if resume else []
    if ctx.is_main:
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
    bar = progress_bar(range(start_epoch, epochs), initial=start_epoch, total=epochs, desc=f"train {fold_dir.name}",
                       requested=progress and ctx.is_main, unit="epoch", mininterval=0)
    print_epochs = progress and ctx.is_main and not bars_enabled()
    write_seconds, last_write = 0.0, time.perf_counter()  # no write yet: the first epoch's is due
    for epoch in bar:
        t0 = time.perf_counter()
        torch.manual_seed(seed * 100003 + epoch)
        model.train()
        total, count = 0.0, 0
        for x, y in task.training_batches(train_data, plan, (seed, epoch), steps, rank=ctx.rank, world=ctx.world):
            loss = optimizer_step(model, loss_fn, optimizer, x, y, plan, device, scaler)
            scheduler.step()
            if average is not None:
                average.update_parameters(unwrap(model))
            total += float(loss)
            count += 1
        steps_seconds = time.perf_counter() - t0
        train_loss = mean_over_processes(total / max(count, 1), ctx)
        row = {"epoch": epoch, "train_loss": round(train_loss, 6), "lr": scheduler.get_last_lr()[0],
               "steps_seconds": round(steps_seconds, 3)}
        every = int(plan.get("validation", {}).get("every", 1))
        if ctx.is_main and val_data is not None and len(val_data) and ((epoch + 1) % every == 0 or epoch == epochs - 1):
            started = time.perf_counter()
            metrics = task.validate(kept(), val_data, plan, device)
            row.update({f"val_{k}": round(float(v), 6) for k, v in metrics.items()})
            row["validation_seconds"] = round(time.perf_counter() - started, 3)
            score = float(metrics.get("score", float("-inf")))
            if score > best_score:
                best_score = score
                save_checkpoint(fold_dir / BEST, {"model": kept().state_dict(), "epoch": epoch}, p_hash)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if ctx.is_main:
            append_line(log_path, json.dumps(row))
            if epoch == epochs - 1 or write_seconds <= CHECKPOINT_SHARE * (time.perf_counter() - last_write):
                state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_score}
                if average is not None:
                    state["ema"] = average.state_dict()
                started = time.perf_counter()
                save_checkpoint(latest, state, p_hash)
                last_write = time.perf_counter()
                write_seconds = last_write - started
            bar.set_postfix({k: v for k, v in row.items() if k in ("train_loss", "val_score")})
            if print_epochs:
                print(f"{fold_dir.name} epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k} {v}" for k, v in row.items() if k in ("train_loss", "val_score", "seconds")), flush=True)
        barrier(ctx)
    final = fold_dir / FINAL
    if ctx.is_main:
        save_checkpoint(final, {"model": kept().state_dict(), "epoch": epochs - 1}, p_hash)
    barrier(ctx)
    return final
