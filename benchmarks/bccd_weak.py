"""BCCD platelets from image labels only: weakly supervised localisation by class-activation maps.

Through the real command line: ``medsight import`` (VOC, BCCD's own 205 / 87 split), then ``medsight weak
--positive-class Platelets``: the classifier learns "holds a platelet" (162 of 292 images) from image
labels only; its CAM peaks on the 87 validation images are scored against the platelet boxes (image AUC,
FROC sensitivities and CPM with a hit when a point lies in a platelet box). Writes
benchmarks/results/bccd_weak.json.

    python benchmarks/bccd_weak.py              # about 5 minutes on 2 cores (half-size images)
    python benchmarks/bccd_weak.py --epochs 1   # a quick look
"""
from __future__ import annotations

import argparse
import os

from _bccd import run_bccd_study
from _common import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--downsample", type=int, default=2, help="images at half size (platelets ~10 px)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    payload = run_bccd_study("weak", "weak.json", "--epochs", str(args.epochs), "--downsample", str(args.downsample),
                             threads=args.threads)
    path = write_results("bccd_weak", payload)
    result = payload["result"]
    print(f"image AUC {result['image_auc']}, CPM {result['cpm']}, top point hit {result['top_point_hit_rate']}; "
          f"written {path}")


if __name__ == "__main__":
    main()
