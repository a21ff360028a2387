"""Shenzhen chest X-rays, 10 lungs: 5-fold cross-validation, lung Dice of every case predicted out of fold.

    python benchmarks/shenzhen.py                      # 4 minutes a fold (20 minutes in all)
    python benchmarks/shenzhen.py --budget-minutes 1   # a quick look

Writes benchmarks/results/shenzhen.json; the goal is lung Dice >= 0.93. Every held-out radiograph is also
predicted at half size (256 x 256, the size of the set's test images) by its fold's network and scored against
its reference at that size (``half_size``): PNGs carry no pixel size, so the plan's field-of-view scaling is what
lets a network trained on 512 x 512 images see a 256 x 256 one at the scale it learned.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
from _common import SHARED_DATA
from _segmentation import medsight, run_benchmark
from PIL import Image as PILImage

HALF_SIDE = 256


def half_size_check(work: Path, fold_ids: list[int], threads: int | None) -> dict:
    """Each fold's held-out images and references at ``HALF_SIDE`` pixels a side (bilinear; references
    thresholded at half), predicted by that fold's run and scored by ``medsight evaluate``."""
    from medsight.datasets.manifest import Manifest

    manifest = Manifest.load(work / "dataset")
    cases = {c.id: c for c in manifest.cases}
    root = work / "half_size"
    shutil.rmtree(root, ignore_errors=True)
    references, predictions = root / "references", root / "predictions"
    references.mkdir(parents=True)
    predictions.mkdir()
    size = (HALF_SIDE, HALF_SIDE)
    for k in fold_ids:
        images = root / f"images_fold{k}"
        images.mkdir()
        for cid in manifest.splits[k]["val"]:
            PILImage.open(cases[cid].images[0]).resize(size, PILImage.BILINEAR).save(images / f"{cid}.png")
            mask = np.asarray(PILImage.open(cases[cid].label).convert("L").resize(size, PILImage.BILINEAR)) >= 128
            PILImage.fromarray(mask.astype(np.uint8)).save(references / f"{cid}.png")
        medsight("predict", str(work / f"run_fold{k}"), str(images), "-o", str(root / f"predictions_fold{k}"),
                 threads=threads)
        for f in (root / f"predictions_fold{k}").glob("*.png"):
            shutil.copy2(f, predictions / f.name)
    medsight("evaluate", str(predictions), str(references), "-o", str(root / "metrics.json"))
    metrics = json.loads((root / "metrics.json").read_text())
    per_case = {c["case"]: round(next(iter(c["metrics"].values()))["dice"], 4) for c in metrics["per_case"]}
    print(f"half size ({HALF_SIDE}^2): mean lung Dice {metrics['mean_dice']:.4f}")
    return {"half_size": {"side": HALF_SIDE, "mean_dice": metrics["mean_dice"], "per_case_dice": per_case,
                          "note": "held-out images and references resized to 256 x 256, predicted by their fold's run"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=4.0, help="training budget per fold")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--jobs", type=int, default=1, help="folds side by side, each pinned to its own core")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_shenzhen")
    args = parser.parse_args()
    run_benchmark("shenzhen", SHARED_DATA / "shenzhen_cxr" / "inputs",
                  ["--format", "pairs", "--images-dir", "train_images", "--labels-dir", "train_masks",
                   "--folds", "5", "--label-names", "1:lung"],
                  args.budget_minutes, args.work, args.threads, goal={"lung": 0.93}, jobs=args.jobs,
                  note="5-fold cross-validation over the 10 labelled images; masks thresholded at 128 on import",
                  after_folds=lambda work, folds: half_size_check(work, folds, args.threads))


if __name__ == "__main__":
    main()
