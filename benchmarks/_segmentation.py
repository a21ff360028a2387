"""Shared runner of the segmentation benchmarks: import, plan, train each fold, predict its held-out cases, score.

Every step is the real command line (``medsight import | plan | train | predict | evaluate``). Each fold
trains into its own run folder, so ``predict`` uses that fold's network only and every case is predicted
by a network that never saw it (cross-validation); one ``evaluate`` then scores all held-out cases.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from _common import format_table, load_average, write_results


def medsight(*args: str, threads: int | None = None) -> float:
    """Run one ``medsight`` command (torch threads fixed when given); its wall seconds; exit when it fails."""
    cmd = [sys.executable, "-m", "medsight", *args]
    env = {**os.environ, "MEDSIGHT_PROGRESS": "0"}
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MEDSIGHT_THREADS": str(threads)})
        if args[0] in ("train", "predict"):
            cmd += ["--threads", str(threads)]
    print("$ medsight", " ".join(a if len(a) < 60 else "..." + a[-40:] for a in args), flush=True)
    start = time.perf_counter()
    if subprocess.run(cmd, env=env).returncode:
        sys.exit(f"medsight {args[0]} failed")
    return time.perf_counter() - start


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
                  note: str = "") -> dict:
    """Import SOURCE, plan with the budget (per fold), train and predict every fold, score; write NAME.json."""
    dataset, predictions = work / "dataset", work / "predictions"
    for d in (dataset, predictions):
        shutil.rmtree(d, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    medsight("import", str(source), str(dataset), *import_args)
    plan_s = medsight("plan", str(dataset), "--budget-minutes", str(budget_minutes), threads=threads)
    plan = json.loads((dataset / "plan.json").read_text())
    n_folds = len(json.loads((dataset / "manifest.json").read_text())["splits"])
    fold_ids = list(folds) if folds is not None else list(range(n_folds))
    per_fold = []
    for k in fold_ids:
        run = work / f"run_fold{k}"
        shutil.rmtree(run, ignore_errors=True)
        ids = held_out_subset(dataset, k, work / f"heldout_fold{k}")
        load_before = load_average()
        train_s = medsight("train", str(dataset), "--fold", str(k), "--out", str(run), threads=threads)
        predict_s = medsight("predict", str(run), str(work / f"heldout_fold{k}"), "-o", str(predictions),
                             threads=threads)
        log = [json.loads(x) for x in (run / f"fold_{k}" / "log.jsonl").read_text().splitlines() if x.strip()]
        per_fold.append({"fold": k, "cases": ids, "train_seconds": round(train_s, 1),
                         "predict_seconds": round(predict_s, 1), "load_before": load_before,
                         "load_after": load_average(), "epochs": len(log),
                         "learning_curve": [{key: r.get(key) for key in ("epoch", "train_loss", "score", "seconds")}
                                            for r in log]})
    medsight("evaluate", str(predictions), str(dataset), "-o", str(work / "metrics.json"))
    metrics = json.loads((work / "metrics.json").read_text())
    summary = {s: {m: v[m] for m in ("dice", "hd95", "sensitivity", "precision")} for s, v in metrics["summary"].items()}
    payload = {"data": str(source), "note": note, "folds": fold_ids, "budget_minutes_per_fold": budget_minutes,
               "threads": threads, "uptime_at_start": uptime, "plan_seconds": round(plan_s, 1),
               "plan": {k: plan.get(k) for k in ("target_spacing", "patch_size", "whole_image", "batch_size",
                                                  "network", "loss", "optimizer", "epochs", "steps_per_epoch",
                                                  "measured_step_seconds")},
               "summary": summary, "mean_dice": metrics["mean_dice"],
               "per_case_dice": {c["case"]: {s: round(m["dice"], 4) for s, m in c["metrics"].items()}
                                 for c in metrics["per_case"]},
               "folds_detail": per_fold, "total_train_seconds": round(sum(f["train_seconds"] for f in per_fold), 1),
               "goal": goal or {}}
    if goal:
        payload["goal_met"] = {s: summary[s]["dice"]["mean"] >= g for s, g in goal.items() if s in summary}
    path = write_results(name, payload)
    rows = [[s, v["dice"]["mean"], f"[{v['dice']['ci95'][0]:.3f}, {v['dice']['ci95'][1]:.3f}]", v["hd95"]["mean"],
             (goal or {}).get(s, "-")] for s, v in summary.items()]
    print(format_table(["structure", "Dice", "95% CI", "HD95", "goal"], rows))
    print(f"train seconds per fold: {[f['train_seconds'] for f in per_fold]}\nwritten {path}")
    return payload
