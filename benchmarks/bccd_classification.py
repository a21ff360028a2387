"""BCCD blood cells: lesion classification at a point (single- vs multi-scale) and MIL "contains platelets".

Through the real command line, on BCCD's own train/val split (205 / 87 images):

- ``medsight lesions``: every box centre is a point (RBC / WBC / Platelets); patches of 48, 96 and 192
  pixels around it, each resized to 32; per-class accuracy of a one-stream network at 96 px and of the
  three-stream network, on the validation images' points.
- ``medsight mil``: bag = image, label = holds a platelet (from the boxes), instances = 32-pixel tiles of
  the image at half size; bag AUC on the validation images, and the attention against the platelet boxes
  (instance AUC, how often the most attended tile holds a platelet).

Prints a table last and writes benchmarks/results/bccd_classification.json.

    python benchmarks/bccd_classification.py
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SHARED_DATA, format_table, load_average, write_results  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def medsight(*args: str, threads: int) -> float:
    """Run one medsight command; its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MEDSIGHT_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medsight", *args, "--threads", str(threads)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"medsight {args[0]} failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip()[-1500:], flush=True)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    """Points from the boxes, lesion classification, MIL; table and JSON."""
    from medsight.classification.lesions import points_from_voc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--mil-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    bccd = SHARED_DATA / "bccd"
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="medsight_bccd_") as tmp:
        work = Path(tmp)
        points = points_from_voc(bccd / "Annotations", bccd / "JPEGImages", work / "points.csv",
                                 {"train": bccd / "splits/train.txt", "val": bccd / "splits/val.txt"})
        lesion_seconds = medsight("lesions", str(points), "-o", str(work / "lesions"), "--scales", "48", "96", "192",
                                  "--patch", "32", "--epochs", str(args.epochs), threads=args.threads)
        lesions = json.loads((work / "lesions" / "lesions.json").read_text())
        subprocess.run([sys.executable, "-m", "medsight", "import", str(bccd), str(work / "ds"), "--format", "voc"],
                       capture_output=True, text=True, check=True)
        mil_seconds = medsight("mil", str(work / "ds"), "--positive-class", "Platelets", "-o", str(work / "mil"),
                               "--epochs", str(args.mil_epochs), threads=args.threads)
        mil = json.loads((work / "mil" / "mil.json").read_text())
    rows = []
    for name in ("single_scale", "multi_scale"):
        r = lesions[name]
        rows.append([f"lesions {name} ({'/'.join(map(str, r['scales']))} px)", r["accuracy"], r["balanced_accuracy"],
                     *[r["per_class_accuracy"][c] for c in ("RBC", "WBC", "Platelets")], r["seconds"]])
    payload = {"data": str(bccd), "split": "BCCD splits/train.txt (205 images) -> splits/val.txt (87 images)",
               "threads": args.threads, "uptime_at_start": uptime, "load_after": load_average(),
               "lesions": {**lesions, "wall_seconds": lesion_seconds}, "mil": {**mil, "wall_seconds": mil_seconds}}
    path = write_results("bccd_classification", payload, Path(args.out) if args.out else None)
    print(format_table(["run", "accuracy", "balanced acc", "RBC", "WBC", "Platelets", "seconds"], rows))
    print(f"MIL contains-platelets: bag AUC {mil['bag_auc']}, instance AUC {mil['instance_auc']}, top tile hit "
          f"{mil['top_tile_hit_rate']} (chance {mil['top_tile_chance_rate']}), {mil_seconds} s")
    print(f"written {path}")


if __name__ == "__main__":
    main()
