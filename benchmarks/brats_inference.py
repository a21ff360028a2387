"""BraTS prediction: what test-time mirroring and the windows' overlap cost and buy, on brats.py's folds.

    python benchmarks/brats.py --jobs 2 --threads 1   # first: trains WORK/run_foldK (about 70 minutes)
    python benchmarks/brats_inference.py              # then: each held-out case predicted four ways (~6 min)

Each fold's network predicts the case it did not train on with the plan's inference (overlap 0.5, every
mirroring), with ``--disable-tta``, with ``--overlap 0.25``, and with both. Per case: wall seconds of the
``medsight predict`` process (start-up, reading and resampling included) and its peak memory (the child's own
rusage); per variant: whole tumour, core and enhancing Dice by ``medsight evaluate``, and each variant's time
and Dice against the plan's own. Writes benchmarks/results/brats_inference.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import format_table, write_results
from _segmentation import _command, medsight

VARIANTS = {"plan (overlap 0.5, mirrored)": [], "--disable-tta": ["--disable-tta"], "--overlap 0.25": ["--overlap", "0.25"],
            "--disable-tta --overlap 0.25": ["--disable-tta", "--overlap", "0.25"]}


def timed_predict(args: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one ``medsight predict`` process."""
    cmd, env = _command(args, threads)
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit("medsight predict failed")
    return seconds, usage.ru_maxrss / 1024 ** 2  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_brats",
                        help="brats.py's work folder (its run_foldK and heldout_foldK)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    folds = sorted(int(d.name[8:]) for d in args.work.glob("run_fold*") if (d / "run.json").is_file())
    if not folds:
        sys.exit(f"{args.work}: no trained run_foldK (run benchmarks/brats.py first)")
    out_root = args.work / "inference_variants"
    shutil.rmtree(out_root, ignore_errors=True)
    results = {}
    for name, flags in VARIANTS.items():
        masks = out_root / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "").strip("-")
        (masks / "all").mkdir(parents=True)
        per_case = []
        for k in folds:
            out = masks / f"fold{k}"
            seconds, peak_gb = timed_predict(["predict", str(args.work / f"run_fold{k}"),
                                              str(args.work / f"heldout_fold{k}"), "-o", str(out), *flags],
                                             args.threads)
            for f in out.glob("*.nii.gz"):
                shutil.copy2(f, masks / "all" / f.name)
                per_case.append({"case": f.name[:-len(".nii.gz")], "fold": k, "seconds": round(seconds, 2),
                                 "peak_rss_gb": round(peak_gb, 2)})
        medsight("evaluate", str(masks / "all"), str(args.work / "dataset"), "-o", str(masks / "metrics.json"))
        metrics = json.loads((masks / "metrics.json").read_text())
        regions = list(metrics["summary"])
        results[name] = {
            "flags": flags, "cases": per_case,
            "seconds_mean": round(sum(c["seconds"] for c in per_case) / len(per_case), 2),
            "dice": {r: round(metrics["summary"][r]["dice"]["mean"], 4) for r in regions},
            "hd95": {r: round(metrics["summary"][r]["hd95"]["mean"], 2) for r in regions},
            "per_case_dice": {c["case"]: {r: round(m["dice"], 4) for r, m in c["metrics"].items()}
                              for c in metrics["per_case"]}}
    base = results[next(iter(VARIANTS))]
    for r in results.values():
        r["time_ratio_to_plan"] = round(r["seconds_mean"] / base["seconds_mean"], 3)
        r["dice_minus_plan"] = {k: round(v - base["dice"][k], 4) for k, v in r["dice"].items()}
    plan = json.loads((args.work / "run_fold0" / "plan.json").read_text()) if 0 in folds else {}
    path = write_results("brats_inference", {
        "work": str(args.work), "folds": folds, "threads": args.threads, "inference": plan.get("inference"),
        "note": "each fold's network predicts its held-out case; seconds are the predict process's wall time",
        "variants": results})
    rows = [[name, r["seconds_mean"], r["time_ratio_to_plan"], *r["dice"].values()] for name, r in results.items()]
    print(format_table(["predict", "s a case", "x plan", *base["dice"]], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
