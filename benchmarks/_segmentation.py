"""Shared runner of the segmentation benchmarks: import, plan, train each fold, predict its held-out cases, score.

Every step is the real command line (``medsight import | plan | train | predict | evaluate``). Each fold
trains into its own run folder, so ``predict`` uses that fold's network only and every case is predicted
by a network that never saw it (cross-validation); one ``evaluate`` then scores all held-out cases.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from _common import THREAD_VARIABLES, format_table, load_average, pin_threads, uptime, write_results


def _command(args: Sequence[str], threads: int | None, core: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one ``medsight`` command (torch threads fixed when given, pinned to
    CPU ``core`` by ``taskset`` when given)."""
    cmd = ([] if core is None else ["taskset", "-c", str(core)]) + [sys.executable, "-m", "medsight", *args]
    env = {**os.environ, "MEDSIGHT_PROGRESS": "0"}
    if threads:
        # every pool, not only OpenMP's: an inherited MKL_NUM_THREADS=2 on one pinned core made a bf16 step 2.7x
        # slower (the plan then wrongly chose float32)
        env.update({var: str(threads) for var in THREAD_VARIABLES})
        env["MEDSIGHT_THREADS"] = str(threads)
        if args[0] in ("train", "predict"):
            cmd += ["--threads", str(threads)]
    print("$ medsight", " ".join(a if len(a) < 60 else "..." + a[-40:] for a in args), flush=True)
    return cmd, env


def medsight(*args: str, threads: int | None = None, core: int | None = None) -> float:
    """Run one ``medsight`` command (torch threads fixed when given, pinned to CPU ``core`` when given);
    its wall seconds; exit when it fails."""
    cmd, env = _command(args, threads, core)
    start = time.perf_counter()
    if subprocess.run(cmd, env=env).returncode:
        sys.exit(f"medsight {args[0]} failed")
    return time.perf_counter() - start


def read_log(path: Path) -> list[dict]:
    """The complete rows of a ``log.jsonl`` (keys: epoch, train_loss, lr, val_score, val_dice, seconds)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines() if x.strip()]


def train_watched(dataset: Path, run: Path, threads: int | None, fold: int = 0,
                  poll_s: float = 0.25, core: int | None = None) -> tuple[float, list[dict]]:
    """``medsight train`` with its log watched from outside: its wall seconds and its log rows.

    Each row gains ``wall_s``: seconds from the command's start (process start-up, preprocessing and
    data loading included) until its line appeared in ``fold_K/log.jsonl`` (to within ``poll_s``).
    """
    cmd, env = _command(["train", str(dataset), "--fold", str(fold), "--out", str(run)], threads, core)
    log_path = run / f"fold_{fold}" / "log.jsonl"
    log_path.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    arrived: list[float] = []
    while True:
        finished = proc.poll() is not None
        rows = read_log(log_path)
        arrived += [round(time.perf_counter() - start, 2)] * (len(rows) - len(arrived))
        if finished:
            break
        time.sleep(poll_s)
    if proc.returncode:
        sys.exit("medsight train failed")
    return time.perf_counter() - start, [{**r, "wall_s": t} for r, t in zip(rows, arrived)]


def train_and_predict(source: Path, import_args: Sequence[str], work: Path, budget: float, threads: int,
                      core: int | None = None, after_plan: Callable[[], object] | None = None) -> dict:
    """Import SOURCE into ``work/dataset``, plan with the budget, train fold 0 watched, predict its held-out cases
    (plan, train and predict pinned to CPU ``core`` when given; ``after_plan`` is called between plan and
    train, so that what it starts does not disturb the plan's timing).

    Returns the folders (``dataset``, ``predictions``), the ``plan``, the seconds of each step, the
    watched log rows (see :func:`train_watched`) and the load average before training.
    """
    dataset, run, predictions, heldout = work / "dataset", work / "run", work / "predictions", work / "heldout"
    for d in (dataset, run, predictions, heldout):
        shutil.rmtree(d, ignore_errors=True)
    medsight("import", str(source), str(dataset), *import_args)
    plan_s = medsight("plan", str(dataset), "--budget-minutes", str(budget), threads=threads, core=core)
    if after_plan is not None:
        after_plan()
    load_before = load_average()
    train_s, log = train_watched(dataset, run, threads, core=core)
    held_out_subset(dataset, 0, heldout)
    predict_s = medsight("predict", str(run), str(heldout), "-o", str(predictions), threads=threads, core=core)
    return {"dataset": dataset, "predictions": predictions, "plan": json.loads((dataset / "plan.json").read_text()),
            "plan_seconds": round(plan_s, 1), "train_seconds": round(train_s, 1), "predict_seconds": round(predict_s, 1),
            "log": log, "load_before": load_before}


PLAN_KEYS = ("patch_size", "whole_image", "batch_size", "network", "loss", "optimizer", "epochs", "steps_per_epoch",
             "measured_step_seconds", "measured_epoch_parts", "validation")


def comparison_args(parser: argparse.ArgumentParser, budget: float, work_name: str) -> tuple[argparse.Namespace, str]:
    """Add the options every medsight-vs-MONAI benchmark shares, parse them, pin the threads, make the work folder;
    the parsed options and ``uptime`` at the start."""
    parser.add_argument("--budget-minutes", type=float, default=budget, help="medsight's plan budget and MONAI's limit")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for both")
    parser.add_argument("--val-every", type=int, default=100, help="MONAI validates every this many steps")
    parser.add_argument("--overlap", type=float, default=0.25, help="MONAI sliding-window overlap")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / work_name)
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    pin_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    return args, uptime()


def masked_dice(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Dice (= pixel-wise F1) of two binary masks, counted inside ``mask`` only when given; 1.0 when both are empty."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if mask is not None:
        pred, ref = pred & mask, ref & mask
    denom = int(pred.sum()) + int(ref.sum())
    return 2.0 * int(np.logical_and(pred, ref).sum()) / denom if denom else 1.0


def read_mask(path: str | Path) -> np.ndarray:
    """The first channel of an image or mask file, (H, W), read by medsight's reader for every system alike."""
    from medsight.io import read_image

    return read_image(path).array[0]


def held_out_subset(dataset: Path, fold: int, out: Path) -> list[str]:
    """Write a dataset folder holding only fold ``fold``'s validation cases; their ids."""
    from medsight.datasets.manifest import Manifest

    manifest = Manifest.load(dataset)
    val_ids = manifest.splits[fold]["val"]
    fields = {k: getattr(manifest, k) for k in manifest.__dataclass_fields__}
    subset = Manifest(**{**fields, "cases": [c for c in manifest.cases if c.id in set(val_ids)], "splits": []})
    out.mkdir(parents=True, exist_ok=True)
    subset.save(out)
    return list(val_ids)


def run_benchmark(name: str, source: Path, import_args: Sequence[str], budget_minutes: float, work: Path,
                  threads: int | None, folds: Sequence[int] | None = None, goal: dict | None = None,
                  note: str = "", jobs: int = 1, after_folds: Callable[[Path, list[int]], dict] | None = None) -> dict:
    """Import SOURCE, plan with the budget (per fold), train and predict every fold, score; write NAME.json.

    With ``jobs`` > 1, that many folds run side by side, each pinned to its own CPU core (``taskset``); the
    plan is then made with ``threads`` torch threads (1 per fold is what a fair split of the cores is).
    ``after_folds(work, fold_ids)``, when given, runs once every fold is trained (its run is
    ``work/run_foldK``); what it returns is added to the results."""
    dataset, predictions = work / "dataset", work / "predictions"
    for d in (dataset, predictions):
        shutil.rmtree(d, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    uptime_at_start = uptime()
    medsight("import", str(source), str(dataset), *import_args)
    plan_s = medsight("plan", str(dataset), "--budget-minutes", str(budget_minutes), threads=threads)
    plan = json.loads((dataset / "plan.json").read_text())
    n_folds = len(json.loads((dataset / "manifest.json").read_text())["splits"])
    fold_ids = list(folds) if folds is not None else list(range(n_folds))
    def run_fold(k: int, core: int | None = None) -> dict:
        run, fold_predictions = work / f"run_fold{k}", work / f"predictions_fold{k}"
        for d in (run, fold_predictions):
            shutil.rmtree(d, ignore_errors=True)
        ids = held_out_subset(dataset, k, work / f"heldout_fold{k}")
        load_before = load_average()
        train_s = medsight("train", str(dataset), "--fold", str(k), "--out", str(run), threads=threads, core=core)
        predict_s = medsight("predict", str(run), str(work / f"heldout_fold{k}"), "-o", str(fold_predictions),
                             threads=threads, core=core)
        log = read_log(run / f"fold_{k}" / "log.jsonl")
        return {"fold": k, "cases": ids, "core": core, "train_seconds": round(train_s, 1),
                "predict_seconds": round(predict_s, 1), "load_before": load_before,
                "load_after": load_average(), "epochs": len(log),
                "learning_curve": [{key: r.get(key) for key in ("epoch", "train_loss", "val_score", "seconds")}
                                   for r in log]}

    if jobs > 1:  # folds side by side, each on its own core (``threads`` should then be 1)
        from concurrent.futures import ThreadPoolExecutor
        from queue import SimpleQueue

        cores: SimpleQueue = SimpleQueue()
        for c in range(jobs):
            cores.put(c)

        def on_free_core(k: int) -> dict:
            core = cores.get()
            try:
                return run_fold(k, core)
            finally:
                cores.put(core)

        with ThreadPoolExecutor(jobs) as pool:
            per_fold = list(pool.map(on_free_core, fold_ids))
    else:
        per_fold = [run_fold(k) for k in fold_ids]
    predictions.mkdir(parents=True)
    for k in fold_ids:  # every held-out case comes from the network of its own fold
        for f in (work / f"predictions_fold{k}").iterdir():
            if f.is_file() and f.suffix != ".csv":
                shutil.copy2(f, predictions / f.name)
    medsight("evaluate", str(predictions), str(dataset), "-o", str(work / "metrics.json"))
    metrics = json.loads((work / "metrics.json").read_text())
    summary = {s: {m: v[m] for m in ("dice", "hd95", "sensitivity", "precision")} for s, v in metrics["summary"].items()}
    payload = {"data": str(source), "note": note, "folds": fold_ids, "budget_minutes_per_fold": budget_minutes,
               "threads": threads, "folds_side_by_side": jobs, "uptime_at_start": uptime_at_start, "plan_seconds": round(plan_s, 1),
               "plan": {k: plan.get(k) for k in ("target_spacing", *PLAN_KEYS)},
               "summary": summary, "mean_dice": metrics["mean_dice"],
               "per_case_dice": {c["case"]: {s: round(m["dice"], 4) for s, m in c["metrics"].items()}
                                 for c in metrics["per_case"]},
               "folds_detail": per_fold, "total_train_seconds": round(sum(f["train_seconds"] for f in per_fold), 1),
               "goal": goal or {}}
    if goal:
        payload["goal_met"] = {s: summary[s]["dice"]["mean"] >= g for s, g in goal.items() if s in summary}
    if after_folds is not None:
        payload.update(after_folds(work, fold_ids))
    path = write_results(name, payload)
    rows = [[s, v["dice"]["mean"], f"[{v['dice']['ci95'][0]:.3f}, {v['dice']['ci95'][1]:.3f}]", v["hd95"]["mean"],
             (goal or {}).get(s, "-")] for s, v in summary.items()]
    print(format_table(["structure", "Dice", "95% CI", "HD95", "goal"], rows))
    print(f"train seconds per fold: {[f['train_seconds'] for f in per_fold]}\nwritten {path}")
    return payload


MONAI_UNET = ("monai.networks.nets.UNet(spatial_dims=2, out_channels=2, channels=(16, 32, 64, 128, 256), "
              "strides=(2, 2, 2, 2), num_res_units=2); DiceCELoss(to_onehot_y=True, softmax=True); Adam lr 1e-3; "
              "16 patches 128x128 a step (2 images x RandCropByPosNegLabeld pos=1 neg=1 num_samples=8); RandFlipd "
              "on both axes, RandRotate90d; NormalizeIntensityd channel-wise z-score; CacheDataset + DataLoader, "
              "num_workers=0; sliding_window_inference roi 128, gaussian")


def monai_training_steps(loader, model, loss_fn, optimizer, deadline: float):
    """A MONAI user's training loop: one optimiser step per batch (``image``, ``label``), the loader gone
    through again and again; yields (step, loss, out of time) and stops after the step that ran past
    ``deadline`` (``time.perf_counter()``)."""
    model.train()
    step = 0
    while True:
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            step += 1
            out_of_time = time.perf_counter() >= deadline
            yield step, float(loss.detach()), out_of_time
            if out_of_time:
                return


def train_monai_unet(train_items: list[dict], val_items: list[dict], in_channels: int,
                     foreground: Callable, budget_minutes: float, threads: int, val_every: int = 100,
                     target: float | None = None, overlap: float = 0.25, seed: int = 0) -> dict:
    """A MONAI user's 2D U-Net (:data:`MONAI_UNET`), trained until validation Dice >= ``target`` or the budget ends.

    Items are dicts of file paths: ``image``, ``label`` and, for validation, ``id`` and optionally ``fov``
    (Dice is counted inside it). ``foreground`` maps a loaded label tensor to {0, 1} (1 = the class scored).
    Validation every ``val_every`` steps and once more when the budget runs out; every second counts from
    this call (data loading and caching included). Returns the curve, the times and the last validation's
    masks under ``predictions`` ({id: (H, W) bool}, not JSON: pop it before writing results).
    """
    import torch
    from monai.data import CacheDataset, DataLoader, PILReader
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import (Compose, EnsureChannelFirstd, Lambdad, LoadImaged, NormalizeIntensityd,
                                  RandCropByPosNegLabeld, RandFlipd, RandRotate90d)
    from monai.utils import set_determinism

    torch.set_num_threads(threads)
    set_determinism(seed)
    start = time.perf_counter()
    deadline = start + budget_minutes * 60.0

    def loading(keys: list[str]) -> list:
        steps = [LoadImaged(keys, reader=PILReader(reverse_indexing=False)), EnsureChannelFirstd(keys),
                 NormalizeIntensityd("image", channel_wise=True), Lambdad("label", foreground)]
        return steps + ([Lambdad("fov", lambda x: x > 0)] if "fov" in keys else [])

    pair = ["image", "label"]
    train_tf = Compose(loading(pair) + [
        RandCropByPosNegLabeld(pair, "label", spatial_size=(128, 128), pos=1, neg=1, num_samples=8),
        RandFlipd(pair, prob=0.5, spatial_axis=0), RandFlipd(pair, prob=0.5, spatial_axis=1),
        RandRotate90d(pair, prob=0.5, max_k=3)])
    loader = DataLoader(CacheDataset(train_items, train_tf, progress=False), batch_size=2, shuffle=True,
                        num_workers=0)
    val_data = CacheDataset(val_items, Compose(loading([k for k in ("image", "label", "fov") if k in val_items[0]])),
                            progress=False)
    model = UNet(spatial_dims=2, in_channels=in_channels, out_channels=2, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), num_res_units=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def validate() -> tuple[float, dict[str, np.ndarray]]:
        model.eval()
        preds, dices = {}, []
        with torch.inference_mode():
            for item in val_data:
                logits = sliding_window_inference(item["image"][None], (128, 128), 4, model, overlap=overlap,
                                                  mode="gaussian")
                pred = np.asarray(logits.argmax(1)[0]) == 1
                fov = np.asarray(item["fov"][0]) if "fov" in item else None
                dices.append(masked_dice(pred, np.asarray(item["label"][0]) > 0, fov))
                preds[item["id"]] = pred
        model.train()
        return float(np.mean(dices)), preds

    curve: list[dict] = []
    step, losses, reached, preds = 0, [], None, {}
    for step, loss, out_of_time in monai_training_steps(loader, model, loss_fn, optimizer, deadline):
        losses.append(loss)
        if step % val_every == 0 or out_of_time:
            dice, preds = validate()
            seconds = time.perf_counter() - start
            curve.append({"step": step, "seconds": round(seconds, 1), "train_loss": round(float(np.mean(losses)), 5),
                          "val_dice": round(dice, 4)})
            losses = []
            print(f"MONAI step {step}: {seconds:.0f} s, train loss {curve[-1]['train_loss']}, val Dice {dice:.4f}",
                  flush=True)
            if target is not None and dice >= target:
                reached = seconds
                break
    return {"wall_seconds": round(time.perf_counter() - start, 1), "steps": step, "patches_per_step": 16,
            "time_to_target_s": None if reached is None else round(reached, 1), "reached_target": reached is not None,
            "final_val_dice": curve[-1]["val_dice"], "learning_curve": curve, "recipe": MONAI_UNET,
            "val_every_steps": val_every, "sliding_window_overlap": overlap, "predictions": preds}
