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
import json
import os
import tempfile
from pathlib import Path

from _common import SHARED_DATA, load_average, write_results
from _segmentation import medsight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--downsample", type=int, default=2, help="images at half size (platelets ~10 px)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medsight_weak_") as tmp:
        ds, out = Path(tmp) / "ds", Path(tmp) / "out"
        medsight("import", str(SHARED_DATA / "bccd"), str(ds), "--format", "voc")
        load_before = load_average()
        seconds = medsight("weak", str(ds), "--positive-class", "Platelets", "-o", str(out), "--epochs",
                           str(args.epochs), "--downsample", str(args.downsample), "--threads", str(args.threads))
        result = json.loads((out / "weak.json").read_text())
    path = write_results("bccd_weak", {"data": str(SHARED_DATA / "bccd"), "split": "splits/train.txt -> splits/val.txt",
                                       "threads": args.threads, "load_before": load_before, "load_after": load_average(),
                                       "wall_seconds": round(seconds, 1), "result": result})
    print(f"image AUC {result['image_auc']}, CPM {result['cpm']}, top point hit {result['top_point_hit_rate']}; "
          f"written {path}")


if __name__ == "__main__":
    main()
