"""BCCD "contains platelets" by multiple-instance learning: bag AUC and instance localisation against the boxes.

Through the real command line: ``medsight import`` (VOC, BCCD's own 205 / 87 split), then ``medsight mil
--positive-class Platelets``: an image is a bag of tiles labelled only "holds a platelet" (162 of 292
images); gated attention pools the tiles. On the 87 validation images it reports the bag AUC and, for the
positive bags, the instance AUC of the tile scores against the tiles that hold a platelet centre and how
often the top-scored tile holds one (with the chance rate). Both tile encoders, one after the other: frozen
ImageNet EfficientNet-Lite0 features (the default) and a small CNN trained from scratch. Writes
benchmarks/results/bccd_mil.json.

    python benchmarks/bccd_mil.py              # 20 epochs each, about 15 minutes on 2 cores
    python benchmarks/bccd_mil.py --epochs 2 --encoders imagenet   # a quick look
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from _bccd import run_bccd_study
from _common import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tile", type=int, default=32, help="tile side after downsampling")
    parser.add_argument("--downsample", type=int, default=2)
    parser.add_argument("--encoders", nargs="+", choices=["imagenet", "scratch"], default=["imagenet", "scratch"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    runs = {}
    for encoder in args.encoders:
        runs[encoder] = run_bccd_study("mil", "mil.json", "--epochs", str(args.epochs), "--tile", str(args.tile),
                                       "--downsample", str(args.downsample), "--encoder", encoder, threads=args.threads)
        result = runs[encoder]["result"]
        print(f"{encoder}: bag AUC {result['bag_auc']}; instance AUC {result['instance_auc']}, top tile hit "
              f"{result['top_tile_hit_rate']} (chance {result['top_tile_chance_rate']})", flush=True)
    path = write_results("bccd_mil", {"encoders": runs}, args.out)
    print(f"written {path}")


if __name__ == "__main__":
    main()
