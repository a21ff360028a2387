"""ISBI 2012 EM membranes: medsight's default plan against a MONAI U-Net with the same wall-clock budget.

Slices 0-19 train, 20-23 validate (the labelled slices; the challenge's test stack is kept back). One run, one
machine, same torch threads, one system after the other:

- **medsight**: the slices are linked into a pairs layout (``images/``, ``labels/``) in the work folder, then
  ``medsight import --format pairs --label-map 0:1,255:0 --label-names 1:membrane --val-cases 20 21 22 23``
  (``--label-map`` is RAW:VALUE, so the 0 pixels, the membranes, become label 1 and the cells label 0),
  ``medsight plan --budget-minutes B``, ``medsight train``, ``medsight predict`` of 20-23.
- **MONAI**: the U-Net of ``_segmentation.MONAI_UNET`` with ``in_channels=1``, its class 1 = membrane
  (label pixel < 128), trained for B minutes (validation Dice every ``--val-every`` steps for the curve only);
  the final weights predict 20-23 with a sliding window.

Both systems' final (512, 512) masks are scored by the same code on the same label files, per slice, then
averaged: **membrane F1** = pixel-wise F1 (= Dice) of the membrane class (reference: label == 0) and
**cell Dice** = Dice of the complementary non-membrane (cell interior, label 255) class.
Prints a table last and writes benchmarks/results/isbi.json.

    python benchmarks/isbi.py                                 # 20 min budget each, all cores
    python benchmarks/isbi.py --budget-minutes 1 --threads 1  # a smoke test, not a result
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from _common import SHARED_DATA, format_table, library_versions, load_average, uptime, write_results
from _segmentation import PLAN_KEYS, comparison_args, masked_dice, read_mask, train_and_predict, train_monai_unet

ISBI = SHARED_DATA / "isbi2012_em"
TRAIN = [str(i) for i in range(20)]
VAL = [str(i) for i in range(20, 24)]


def pairs_layout(out: Path) -> Path:
    """Link slices 0-23 into ``out/images`` and ``out/labels`` (the layout ``--format pairs`` reads)."""
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True)
        for case in TRAIN + VAL:
            (out / sub / f"{case}.png").symlink_to((ISBI / sub / f"{case}.png").resolve())
    return out


def score(membrane: dict[str, np.ndarray]) -> dict:
    """Membrane F1 and cell Dice of each slice's (H, W) membrane mask against its label file, and their means."""
    per_slice = {}
    for case, pred in membrane.items():
        ref = read_mask(ISBI / "labels" / f"{case}.png") == 0
        if pred.shape != ref.shape:
            raise SystemExit(f"slice {case}: prediction {pred.shape} but reference {ref.shape}")
        per_slice[case] = {"membrane_f1": round(masked_dice(pred, ref), 4),
                           "cell_dice": round(masked_dice(~pred, ~ref), 4)}
    means = {k: round(float(np.mean([s[k] for s in per_slice.values()])), 4) for k in ("membrane_f1", "cell_dice")}
    return {**means, "per_slice": per_slice}


def run_medsight(work: Path, budget: float, threads: int) -> dict:
    """Import, plan, watched train, predict and score medsight's default plan on slices 0-23."""
    out = train_and_predict(pairs_layout(work / "source"), ["--format", "pairs", "--label-map", "0:1,255:0",
                            "--label-names", "1:membrane", "--val-cases", *VAL], work, budget, threads)
    scores = score({c: read_mask(next(out["predictions"].glob(f"{c}.*"))) == 1 for c in VAL})
    log = out["log"]
    return {**scores, **{k: out[k] for k in ("plan_seconds", "train_seconds", "predict_seconds", "load_before")},
            "epochs": len(log), "load_after": load_average(),
            "learning_curve": [{"epoch": r["epoch"], "train_loss": r["train_loss"], "val_dice": r.get("val_score"),
                                "epoch_seconds": r["seconds"], "wall_s": r["wall_s"]} for r in log],
            "plan": {k: out["plan"].get(k) for k in PLAN_KEYS}}


def run_monai(budget: float, threads: int, val_every: int, overlap: float) -> dict:
    """The MONAI U-Net trained for ``budget`` minutes on slices 0-19; its final weights scored on 20-23."""
    files = {c: {"id": c, "image": str(ISBI / "images" / f"{c}.png"), "label": str(ISBI / "labels" / f"{c}.png")}
             for c in TRAIN + VAL}
    load_before = load_average()
    result = train_monai_unet([{k: files[c][k] for k in ("image", "label")} for c in TRAIN], [files[c] for c in VAL],
                              1, lambda x: (x < 128).float(), budget, threads, val_every=val_every, overlap=overlap)
    return {**score(result.pop("predictions")), **result, "train_seconds": result["wall_seconds"],
            "load_before": load_before, "load_after": load_average()}


def main() -> None:
    """Run medsight, then MONAI; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args, uptime_at_start = comparison_args(parser, 20.0, "medsight_isbi")
    ours = run_medsight(args.work, args.budget_minutes, args.threads)
    print(f"medsight: membrane F1 {ours['membrane_f1']}, cell Dice {ours['cell_dice']}", flush=True)
    peer = run_monai(args.budget_minutes, args.threads, args.val_every, args.overlap)
    print(f"MONAI: membrane F1 {peer['membrane_f1']}, cell Dice {peer['cell_dice']}", flush=True)
    payload = {
        "data": str(ISBI), "split": {"train": TRAIN, "validate": VAL}, "budget_minutes": args.budget_minutes,
        "threads": args.threads, "uptime_at_start": uptime_at_start, "uptime_at_end": uptime(),
        "libraries": library_versions(["torch", "monai"]), "medsight": ours, "monai": peer,
        "membrane_f1_difference": round(ours["membrane_f1"] - peer["membrane_f1"], 4),
        "metrics": "per validation slice, then averaged: membrane_f1 = pixel-wise F1 (Dice) of the membrane class "
                   "(reference: label pixel == 0; medsight label 1, MONAI class 1); cell_dice = Dice of the "
                   "complementary cell-interior class (label pixel == 255). Same code and label files for both.",
        "timing": "train_seconds: medsight from the start of `medsight train` to its end (preprocessing and "
                  "post-processing decision included, plan excluded: plan_seconds); MONAI from data loading to "
                  "the last validation"}
    path = write_results("isbi", payload, args.out)
    rows = [[name, r["membrane_f1"], r["cell_dice"], r["train_seconds"]]
            for name, r in (("medsight", ours), ("MONAI U-Net", peer))]
    print(format_table(["system", "membrane F1", "cell Dice", "train s"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
