"""DRIVE time to Dice 0.80: medsight's default plan against a MONAI U-Net, one after the other in one run.

Train on 16 images, validate on 22, 29, 39 and 40 (vessel Dice inside the field-of-view masks). Same torch
threads for both, never at the same time:

- **medsight**: ``medsight import --format pairs --val-cases ...``, ``medsight plan --budget-minutes B``,
  ``medsight train`` (watched: each line of ``fold_0/log.jsonl`` is stamped with the seconds since the
  command started), then ``predict`` + ``evaluate`` of the final model. Time to target = the first epoch
  whose ``val_score`` reaches the target. That score is medsight's own validation: whole image in network
  space, inside the field-of-view mask (the dataset's evaluation mask), no mirroring
  (``SegmentationTask.validate``); the final predicted masks are also scored by this script. medsight
  trains its whole plan (B minutes); it does not stop at the target.
- **MONAI**: the U-Net of ``_segmentation.MONAI_UNET`` trained until its validation Dice inside the FOV
  (every ``--val-every`` steps, sliding window) reaches the target, or ``--monai-minutes`` (default B) have
  passed.

Both systems' final masks are scored by the same code (``masked_dice``) on the same reference files.
Prints a table last and writes benchmarks/results/drive_time_to_dice.json. The goal: medsight / MONAI <= 0.5.

With ``--side-by-side`` the two run at the same time, each pinned to its own core with one torch thread
(MONAI in a child process of this script): the same share of the machine for both, in half the wall time.

    python benchmarks/drive_time_to_dice.py                                 # 40 min budget each, all cores
    python benchmarks/drive_time_to_dice.py --budget-minutes 20 --monai-minutes 40 --side-by-side
    python benchmarks/drive_time_to_dice.py --budget-minutes 1 --threads 1  # a smoke test, not a result
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from _common import SHARED_DATA, format_table, library_versions, load_average, uptime, write_results
from _segmentation import (PLAN_KEYS, comparison_args, masked_dice, medsight, read_mask, train_and_predict,
                           train_monai_unet)
from drive import VAL_CASES

DRIVE = SHARED_DATA / "drive" / "training"


def drive_files(case: str) -> dict[str, str]:
    """Image, vessel mask and field-of-view mask of a DRIVE case id such as ``22_training``."""
    n = case.split("_")[0]
    return {"id": case, "image": str(DRIVE / "images" / f"{case}.tif"),
            "label": str(DRIVE / "1st_manual" / f"{n}_manual1.gif"),
            "fov": str(DRIVE / "mask" / f"{n}_training_mask.gif")}


def score(preds: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Vessel Dice of each case's (H, W) mask inside the FOV (``fov``) and over the whole image (``whole``)."""
    out = {}
    for case, pred in preds.items():
        files = drive_files(case)
        ref, fov = read_mask(files["label"]) > 0, read_mask(files["fov"]) > 0
        if pred.shape != ref.shape:
            raise SystemExit(f"{case}: prediction {pred.shape} but reference {ref.shape}")
        out[case] = {"fov": round(masked_dice(pred, ref, fov), 4), "whole": round(masked_dice(pred, ref), 4)}
    return out


def mean_of(scores: dict[str, dict[str, float]], key: str) -> float:
    """Mean over cases of one score."""
    return round(float(np.mean([s[key] for s in scores.values()])), 4)


def validate_every_epoch(dataset: Path) -> None:
    """Edit the plan, as a user may, to validate after every epoch: a time to a Dice is only seen at a validation,
    and MONAI validates every 100 steps. The default plan validates DRIVE every second or third epoch (its four
    images cost more than a tenth of an epoch); the epochs stay as planned, so medsight pays the extra validations."""
    from medsight.planning.plan import load_plan, save_plan

    plan = load_plan(dataset)
    plan.setdefault("validation", {})["every"] = 1
    save_plan(plan, dataset)


def run_medsight(work: Path, budget: float, threads: int, target: float, core: int | None = None,
                 after_plan: Callable[[], object] | None = None) -> dict:
    """Import, plan, watched train, predict and score medsight's default plan on the DRIVE split (validated after
    every epoch, see :func:`validate_every_epoch`)."""
    def before_training() -> None:
        validate_every_epoch(work / "dataset")
        if after_plan is not None:
            after_plan()

    out = train_and_predict(DRIVE, ["--format", "pairs", "--val-cases", *VAL_CASES, "--label-names", "1:vessel"],
                            work, budget, threads, core=core, after_plan=before_training)
    medsight("evaluate", str(out["predictions"]), str(out["dataset"]), "-o", str(work / "metrics.json"))
    metrics = json.loads((work / "metrics.json").read_text())
    predictions, log = out["predictions"], out["log"]
    preds = {c: read_mask(next(predictions.glob(f"{c}.*"))) == 1 for c in VAL_CASES}
    scores = score(preds)
    curve, epoch_sum = [], 0.0
    for r in log:
        epoch_sum += r["seconds"]
        curve.append({"epoch": r["epoch"], "train_loss": r["train_loss"], "val_dice": r.get("val_score"),
                      "epoch_seconds": r["seconds"], "cumulative_epoch_seconds": round(epoch_sum, 1),
                      "wall_s": r["wall_s"]})
    hit = next((c for c in curve if c["val_dice"] is not None and c["val_dice"] >= target), None)
    return {"time_to_target_s": hit["wall_s"] if hit else None,
            "time_to_target_epoch_seconds": hit["cumulative_epoch_seconds"] if hit else None,
            "target_epoch": hit["epoch"] if hit else None, "reached_target": hit is not None,
            **{k: out[k] for k in ("plan_seconds", "train_seconds", "predict_seconds", "load_before")},
            "final_dice_fov": mean_of(scores, "fov"), "final_dice_whole_image": mean_of(scores, "whole"),
            "final_log_val_dice": curve[-1]["val_dice"] if curve else None,
            "medsight_evaluate_vessel_dice": metrics["summary"]["vessel"]["dice"]["mean"],
            "per_case_final_dice": scores, "epochs": len(curve), "load_after": load_average(),
            "learning_curve": curve, "plan": {k: out["plan"].get(k) for k in PLAN_KEYS}}


def run_monai(budget: float, threads: int, target: float, val_every: int, overlap: float) -> dict:
    """The MONAI U-Net on the same split, stopped at the target Dice (inside the FOV) or the budget."""
    train = [drive_files(p.stem) for p in sorted((DRIVE / "images").glob("*.tif")) if p.stem not in VAL_CASES]
    load_before = load_average()
    result = train_monai_unet([{k: f[k] for k in ("image", "label")} for f in train],
                              [drive_files(c) for c in VAL_CASES], 3, lambda x: (x > 127).float(), budget, threads,
                              val_every=val_every, target=target, overlap=overlap)
    scores = score(result.pop("predictions"))
    return {**result, "final_dice_fov": mean_of(scores, "fov"), "final_dice_whole_image": mean_of(scores, "whole"),
            "per_case_final_dice": scores, "load_before": load_before, "load_after": load_average()}


def monai_side_by_side(args: argparse.Namespace, core: int) -> subprocess.Popen:
    """Start this script's MONAI part in a child process pinned to ``core`` with one thread; it writes
    ``work/monai.json``."""
    cmd = ["taskset", "-c", str(core), sys.executable, __file__, "--only", "monai", "--threads", "1",
           "--monai-minutes", str(args.monai_minutes), "--target", str(args.target), "--val-every", str(args.val_every),
           "--overlap", str(args.overlap), "--work", str(args.work)]
    return subprocess.Popen(cmd)


def main() -> None:
    """Run medsight, then MONAI (or both at once, one core each); print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.80, help="validation Dice to reach")
    parser.add_argument("--monai-minutes", type=float, help="MONAI's time limit (default: --budget-minutes)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run both at once, each pinned to its own core with one thread")
    parser.add_argument("--only", choices=["monai"], help=argparse.SUPPRESS)  # the child of --side-by-side
    args, uptime_at_start = comparison_args(parser, 40.0, "medsight_drive_ttd")
    args.monai_minutes = args.monai_minutes or args.budget_minutes
    if args.only == "monai":
        peer = run_monai(args.monai_minutes, 1, args.target, args.val_every, args.overlap)
        (args.work / "monai.json").write_text(json.dumps(peer))
        return
    children: list[subprocess.Popen] = []
    if args.side_by_side:  # MONAI starts once medsight's plan is made: the plan times steps on an idle core pair
        args.threads = 1
        (args.work / "monai.json").unlink(missing_ok=True)
    ours = run_medsight(args.work, args.budget_minutes, args.threads, args.target,
                        core=0 if args.side_by_side else None,
                        after_plan=(lambda: children.append(monai_side_by_side(args, core=1))) if args.side_by_side else None)
    child = children[0] if children else None
    print(f"medsight: time to {args.target} {ours['time_to_target_s']} s, final Dice (FOV) {ours['final_dice_fov']}",
          flush=True)
    if child is not None:
        if child.wait():
            sys.exit("the MONAI part failed")
        peer = json.loads((args.work / "monai.json").read_text())
    else:
        peer = run_monai(args.monai_minutes, args.threads, args.target, args.val_every, args.overlap)
    print(f"MONAI: time to {args.target} {peer['time_to_target_s']} s, final Dice (FOV) {peer['final_dice_fov']}",
          flush=True)
    both = ours["reached_target"] and peer["reached_target"]
    ratio = round(ours["time_to_target_s"] / peer["time_to_target_s"], 3) if both else None
    payload = {
        "data": str(DRIVE), "split": {"train": 16, "validate": VAL_CASES}, "target_dice": args.target,
        "budget_minutes": args.budget_minutes, "monai_minutes": args.monai_minutes, "threads": args.threads,
        "side_by_side": args.side_by_side, "uptime_at_start": uptime_at_start, "uptime_at_end": uptime(),
        "libraries": library_versions(["torch", "monai"]), "medsight": ours, "monai": peer,
        "time_ratio_medsight_over_monai": ratio,
        "time_ratio_including_plan": (round((ours["time_to_target_s"] + ours["plan_seconds"])
                                            / peer["time_to_target_s"], 3) if both else None),
        "goal": {"time_ratio_at_most": 0.5}, "goal_met": None if ratio is None else ratio <= 0.5,
        "timing": "seconds from the start of `medsight train` (start-up, preprocessing, validation included; plan "
                  "excluded, see plan_seconds) and from the start of MONAI's data loading, to the end of the first "
                  "validation at or above the target",
        "note": "medsight's per-epoch val_score is its own validation: whole image in network space, inside the "
                "FOV (its evaluation mask), no mirroring; final_dice_fov scores the final predicted masks inside the FOV with the same code "
                "for both systems. A system that never reached the target has time_to_target_s null."}
    path = write_results("drive_time_to_dice", payload, args.out)
    rows = [[name, r["time_to_target_s"] if r["time_to_target_s"] is not None else "not reached",
             r["final_dice_fov"], r["final_dice_whole_image"], r.get("train_seconds", r.get("wall_seconds"))]
            for name, r in (("medsight", ours), ("MONAI U-Net", peer))]
    print(format_table(["system", f"s to Dice {args.target}", "final Dice FOV", "final Dice whole", "train s"], rows))
    print(f"ratio medsight / MONAI: {ratio}\nwritten {path}")


if __name__ == "__main__":
    main()
