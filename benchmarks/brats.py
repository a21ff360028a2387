"""BraTS examples, 4 cases, FLAIR + T1c, 3D: leave-one-out; whole tumour, core and enhancing Dice.

    python benchmarks/brats.py                       # 30 minutes a fold (2 hours in all)
    python benchmarks/brats.py --budget-minutes 10   # shorter folds (say so when quoting)
    python benchmarks/brats.py --jobs 2 --threads 1  # two folds at a time, one core each (about 70 minutes)

The dataset declares the BraTS regions (whole tumour = labels 1-4, core = 1, 3, 4, enhancing = 4), so the
plan trains one sigmoid output per region (nnU-Net's region-based training) and the regions are scored. Writes benchmarks/results/brats.json; the goal is whole-tumour Dice >= 0.85.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import SHARED_DATA
from _segmentation import run_benchmark

REGIONS = {"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="training budget per fold")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to run (default all 4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--jobs", type=int, default=1, help="folds side by side, each pinned to its own core")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_brats")
    args = parser.parse_args()
    regions = ";".join(f"{name}={','.join(map(str, values))}" for name, values in REGIONS.items())
    run_benchmark("brats", SHARED_DATA / "brats_examples", ["--format", "cases", "--folds", "4", "--regions", regions], args.budget_minutes, args.work,
                  args.threads, folds=args.folds, goal={"whole_tumour": 0.85}, jobs=args.jobs,
                  note="leave-one-out over the 4 examples; region-based training (one sigmoid output per region)")


if __name__ == "__main__":
    main()
