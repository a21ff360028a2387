"""DRIVE retinal vessels: train on 16 images, validate on 22, 29, 39 and 40 (vessel Dice inside the FOV mask).

    python benchmarks/drive.py                      # default budget (20 min)
    python benchmarks/drive.py --budget-minutes 3   # a quick look (not a result to quote)

Writes benchmarks/results/drive.json. Published U-Net: Dice about 0.816; the goal is 0.82.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import SHARED_DATA
from _segmentation import run_benchmark

VAL_CASES = ["22_training", "29_training", "39_training", "40_training"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_drive")
    args = parser.parse_args()
    run_benchmark("drive", SHARED_DATA / "drive" / "training",
                  ["--format", "pairs", "--val-cases", *VAL_CASES, "--label-names", "1:vessel"],
                  args.budget_minutes, args.work, args.threads, goal={"vessel": 0.82},
                  note="train 16 images, validate 22, 29, 39, 40; scored inside the field-of-view masks")


if __name__ == "__main__":
    main()
