"""RetinaMNIST (5 ordinal grades): cross-entropy with label smoothing against ordinal Gaussian soft labels.

One plan (medsight's default for the set, 5-minute budget, timed on this machine), trained twice with only
its ``loss`` entry changed, each scored on MedMNIST's validation split (AUC one-vs-rest, accuracy,
balanced accuracy, quadratic kappa, ECE). Writes benchmarks/results/retinamnist_ordinal_loss.json.

    python benchmarks/retinamnist_loss.py --threads 1     # about 12 minutes on one core
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, format_table, write_results

LOSSES = {"ordinal_soft_labels": {"name": "ordinal_soft_labels", "sigma": 1.0},
          "ce_ls0.1": {"name": "ce", "label_smoothing": 0.1}}


def main() -> None:
    import torch

    from medsight import api
    from medsight.datasets.manifest import Manifest
    from medsight.planning.plan import save_plan

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="medsight_retina_") as tmp:
        ds = Path(tmp) / "ds"
        manifest = api.import_dataset(SHARED_DATA / "medmnist" / "retinamnist.npz", ds, progress=False)
        base = api.plan(ds, quiet=True)
        subset = Path(tmp) / "val"
        fields = {k: getattr(manifest, k) for k in manifest.__dataclass_fields__}
        Manifest(**{**fields, "cases": manifest.fold_cases(0)[1], "splits": []}).save(subset)
        for name, loss in LOSSES.items():
            save_plan({**json.loads(json.dumps(base)), "loss": loss}, ds)
            start = time.perf_counter()
            run = api.train(ds, out=Path(tmp) / f"run_{name}", quiet=True, threads=args.threads)
            seconds = time.perf_counter() - start
            pred = api.predict(run, [subset], Path(tmp) / f"pred_{name}", quiet=True)
            m = api.evaluate(pred, subset, quiet=True)["summary"]
            results[name] = {**{k: m.get(k) for k in ("auc", "accuracy", "balanced_accuracy", "quadratic_kappa", "ece")},
                             "train_seconds": round(seconds, 1)}
            rows.append([name, m["auc"], m["accuracy"], m.get("quadratic_kappa"), round(seconds)])
    path = write_results("retinamnist_ordinal_loss", {
        "data": str(SHARED_DATA / "medmnist" / "retinamnist.npz"), "split": "MedMNIST train (1080) -> val (120)",
        "threads": args.threads, "plan": {"network": base["network"], "epochs": base["epochs"],
                                          "budget_minutes": base["budget_minutes"]},
        "results": results, "published_test": {"auc": 0.750, "accuracy": 0.531}}, args.out)
    print(format_table(["loss", "val AUC", "val ACC", "kappa", "train s"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
