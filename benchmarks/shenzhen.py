"""Shenzhen chest X-rays, 10 lungs: 5-fold cross-validation, lung Dice of every case predicted out of fold.

    python benchmarks/shenzhen.py                      # 4 minutes a fold (20 minutes in all)
    python benchmarks/shenzhen.py --budget-minutes 1   # a quick look

Writes benchmarks/results/shenzhen.json; the goal is lung Dice >= 0.93.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import SHARED_DATA
from _segmentation import run_benchmark


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
                  note="5-fold cross-validation over the 10 labelled images; masks thresholded at 128 on import")


if __name__ == "__main__":
    main()
