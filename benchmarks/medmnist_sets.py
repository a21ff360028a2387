"""MedMNIST sets through ``medsight run`` at their default budgets: validation AUC, ACC (and kappa for ordinal).

    python benchmarks/medmnist_sets.py --sets retinamnist           # 5 minutes
    python benchmarks/medmnist_sets.py                              # BreastMNIST, RetinaMNIST, AdrenalMNIST3D

MedMNIST's own train/val split (the test split is kept back). The published MedMNIST v2 test figures to
beat are written beside ours. Writes benchmarks/results/medmnist_sets.json; a set not run this time keeps
its earlier entry there, with that run's date and commit in the entry. The side-by-side comparison
with a MONAI ResNet-18 at the same budget is benchmarks/medmnist.py.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _common import SHARED_DATA, earlier_entries, format_table, load_average, write_results
from _segmentation import medsight

PUBLISHED = {"breastmnist": {"auc": 0.919, "accuracy": 0.863}, "retinamnist": {"auc": 0.750, "accuracy": 0.531},
             "adrenalmnist3d": {"auc": 0.839, "accuracy": 0.802}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    results, rows = earlier_entries("medmnist_sets", "results", set(args.sets)), []
    for name in args.sets:
        with tempfile.TemporaryDirectory(prefix=f"medsight_{name}_") as tmp:
            load_before = load_average()
            seconds = medsight("run", str(SHARED_DATA / "medmnist" / f"{name}.npz"), tmp, threads=args.threads)
            metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
            plan = json.loads((Path(tmp) / "run" / "plan.json").read_text())
            log = (Path(tmp) / "run" / "fold_0" / "log.jsonl").read_text().splitlines()
        summary = metrics["summary"]
        keep = {**{k: summary.get(k) for k in ("auc", "accuracy", "balanced_accuracy", "quadratic_kappa", "ece")},
                "ci95": metrics.get("ci95"), "num_cases": metrics["num_cases"]}
        results[name] = {"medsight": keep, "published_test": PUBLISHED[name], "wall_seconds": round(seconds, 1),
                         "epochs": len(log), "network": plan["network"], "budget_minutes": plan["budget_minutes"],
                         "load_before": load_before, "load_after": load_average()}
        rows.append([name, keep["auc"], keep["accuracy"], keep.get("quadratic_kappa") or "-",
                     f"{PUBLISHED[name]['auc']} / {PUBLISHED[name]['accuracy']}", round(seconds)])
        path = write_results("medmnist_sets", {"data": str(SHARED_DATA / "medmnist"), "split": "train -> val",
                                               "threads": args.threads, "results": results})
    print(format_table(["set", "val AUC", "val ACC", "kappa", "published test AUC / ACC", "seconds"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
