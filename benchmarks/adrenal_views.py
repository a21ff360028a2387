"""AdrenalMNIST3D three ways with the same budget: a 3D network, 2.5D orthogonal planes, slices as an exam.

Each variant is medsight's plan for the data set with only its ``network`` entry changed, epochs set
from the same budget by timing its own training step on this machine, trained through ``api.train``,
and scored on MedMNIST's validation split (AUC, argmax accuracy, with the plan's test-time flips):

- ``3d``: a compact 3D ResNet-18 with a stride-2 stem (the default plan for small volumes until this
  comparison);
- ``2.5d``: the three orthogonal planes through the volume's centre (the "point"), one 2D stream each
  (one network; the default plan now trains an ensemble of these, sized to the budget);
- ``slices``: the 28 axial slices as an exam of images, one shared 2D ResNet, gated attention pooling.

Prints a table last and writes benchmarks/results/adrenal_views.json.

    python benchmarks/adrenal_views.py --budget-minutes 5
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

VARIANTS = {
    "3d": {"name": "small_resnet", "spatial_dims": 3, "in_channels": 1, "num_classes": 2, "layers": [2, 2, 2, 2],
           "widths": [8, 16, 32, 64], "stem_stride": 2, "dropout": 0.2, "members": 1},
    "2.5d": {"name": "orthogonal_planes", "in_channels": 1, "num_classes": 2, "features": [32, 64, 128],
             "dropout": 0.2},
    "slices": {"name": "slice_attention", "in_channels": 1, "num_classes": 2, "widths": [16, 32, 64, 128],
               "layers": [1, 1, 1, 1], "axis": 0, "dropout": 0.2},
}


def main() -> None:
    """Plan once, train each variant for the same budget, score on the validation split."""
    import torch

    from medsight import api
    from medsight.datasets.manifest import Manifest
    from medsight.planning.budget import epochs_for_budget, measure_step_seconds
    from medsight.planning.plan import save_plan
    from medsight.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="per variant (default 5)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results, rows = {}, []
    task = get_task("classification")
    with tempfile.TemporaryDirectory(prefix="medsight_adrenal_") as tmp:
        ds = Path(tmp) / "adrenal"
        manifest = api.import_dataset(SHARED_DATA / "medmnist" / "adrenalmnist3d.npz", ds, progress=False)
        base = api.plan(ds, budget_minutes=args.budget_minutes, quiet=True)
        val_ids = [c.id for c in manifest.fold_cases(0)[1]]
        for name in args.variants:
            plan = json.loads(json.dumps(base))
            if VARIANTS[name]:
                plan["network"] = dict(VARIANTS[name])
                step = measure_step_seconds(task, plan, torch.device("cpu"))
                plan["measured_step_seconds"] = round(step, 4)
                plan["epochs"] = epochs_for_budget(step, plan["steps_per_epoch"], args.budget_minutes)
            save_plan(plan, ds)
            start = time.perf_counter()
            run = api.train(ds, out=Path(tmp) / f"run_{name}", quiet=True, threads=args.threads)
            seconds = time.perf_counter() - start
            subset = Path(tmp) / "val"
            if not subset.exists():
                subset.mkdir()
                fields = {k: getattr(manifest, k) for k in manifest.__dataclass_fields__}
                Manifest(**{**fields, "cases": manifest.fold_cases(0)[1], "splits": []}).save(subset)
            pred = api.predict(run, [subset], Path(tmp) / f"pred_{name}", quiet=True)
            metrics = api.evaluate(pred, subset, quiet=True)["summary"]
            results[name] = {"auc": metrics["auc"], "accuracy": metrics["accuracy"], "train_seconds": round(seconds, 1),
                             "epochs": plan["epochs"], "network": plan["network"], "load": load_average()}
            rows.append([name, plan["network"]["name"], metrics["auc"], metrics["accuracy"], plan["epochs"],
                         round(seconds, 1)])
            print(f"{name}: AUC {metrics['auc']:.3f} ACC {metrics['accuracy']:.3f} ({seconds:.0f} s)", flush=True)
    payload = {"data": str(SHARED_DATA / "medmnist" / "adrenalmnist3d.npz"), "split": "MedMNIST train -> val",
               "validation_cases": len(val_ids), "budget_minutes_per_variant": args.budget_minutes,
               "threads": args.threads, "uptime_at_start": uptime, "results": results}
    path = write_results("adrenal_views", payload, Path(args.out) if args.out else None)
    print(format_table(["variant", "network", "val AUC", "val ACC", "epochs", "train s"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
