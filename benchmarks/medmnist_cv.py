"""A MedMNIST set's default plan in k-fold cross-validation over its training split: pooled out-of-fold metrics.

    python benchmarks/medmnist_cv.py                          # RetinaMNIST, 5 folds of 5 minutes
    python benchmarks/medmnist_cv.py --set breastmnist --folds 5

MedMNIST's validation split is small (RetinaMNIST: 120 images, an accuracy interval of about +-0.09), too
small to tell a model at the published test accuracy from one below it. This benchmark splits the
training images into stratified folds (seed 0), trains ``medsight run``'s default plan on each fold's
other images with the fold as its validation data, and scores the pooled out-of-fold probabilities of all
training images: every image is predicted by a model that never saw it. The validation and test splits
are not touched. Alternative decision rules for ordinal grades (the expected grade rounded, the median
grade) are scored on the same probabilities beside the default argmax. Writes
benchmarks/results/medmnist_cv.json (a set not run this time keeps its earlier entry).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from _common import SHARED_DATA, earlier_entries, format_table, load_average, write_results
from _segmentation import medsight

PUBLISHED_TEST = {"breastmnist": {"auc": 0.919, "accuracy": 0.863},
                  "retinamnist": {"auc": 0.750, "accuracy": 0.531}}


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each sample: each class dealt round-robin over the folds after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=int)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        folds[members] = np.arange(len(members)) % k
    return folds


def out_of_fold_probabilities(run_dir: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The validation cases' indices (from ids ``val_NNNN``) and their ``prob_<k>`` rows in predictions.csv."""
    index, probs = [], []
    with open(run_dir / "validation_predictions" / "predictions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            index.append(int(row["case"].split("_")[1]))
            probs.append([float(row[f"prob_{k}"]) for k in range(n_classes)])
    return np.asarray(index), np.asarray(probs)


def decision_rules(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Labels from probabilities: argmax (medsight's), and for ordinal grades the rounded mean and the median."""
    grades = np.arange(probs.shape[1])
    return {"argmax": probs.argmax(1),
            "expected_grade_rounded": np.clip(np.rint(probs @ grades), 0, grades[-1]).astype(int),
            "median_grade": (np.cumsum(probs, 1) >= 0.5).argmax(1)}


def main() -> None:
    from medsight.evaluation.bootstrap import bootstrap_ci
    from medsight.evaluation.classification import classification_metrics, roc_auc

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="retinamnist", choices=list(PUBLISHED_TEST))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    source = np.load(SHARED_DATA / "medmnist" / f"{args.set}.npz")
    images, labels = source["train_images"], source["train_labels"].reshape(-1).astype(int)
    n_classes = int(labels.max()) + 1
    folds = stratified_folds(labels, args.folds)
    probs = np.full((len(labels), n_classes), np.nan)
    per_fold, load_before, seconds = [], load_average(), 0.0
    for k in range(args.folds):
        with tempfile.TemporaryDirectory(prefix=f"medsight_{args.set}_cv{k}_") as tmp:
            held = folds == k
            # the importer knows the set (class names, ordinal grades) by the file's name
            npz = Path(tmp) / "data" / f"{args.set}.npz"
            npz.parent.mkdir()
            np.savez(npz, train_images=images[~held], train_labels=labels[~held, None],
                     val_images=images[held], val_labels=labels[held, None])
            fold_seconds = medsight("run", str(npz), str(Path(tmp) / "out"), threads=args.threads)
            run = Path(tmp) / "out" / "run"
            index, fold_probs = out_of_fold_probabilities(run, n_classes)
            plan = json.loads((run / "plan.json").read_text())
            epochs = len((run / "fold_0" / "log.jsonl").read_text().splitlines())
        rows = np.flatnonzero(held)[index]
        probs[rows] = fold_probs
        seconds += fold_seconds
        per_fold.append({"fold": k, "n": int(held.sum()), "auc": roc_auc(labels[rows], fold_probs),
                         "accuracy": float(np.mean(fold_probs.argmax(1) == labels[rows])),
                         "epochs": epochs, "wall_seconds": round(fold_seconds, 1)})
        print(f"fold {k}: AUC {per_fold[-1]['auc']:.3f}, ACC {per_fold[-1]['accuracy']:.3f}", flush=True)
    if np.isnan(probs).any():
        raise SystemExit("some training images got no out-of-fold prediction")
    ordinal = args.set == "retinamnist"
    pooled = classification_metrics(labels, probs, ordinal=ordinal)
    intervals = {name: bootstrap_ci(fn, labels, probs, stratify=labels)[1:] for name, fn in
                 {"auc": roc_auc, "accuracy": lambda y, p: float(np.mean(p.argmax(1) == y))}.items()}
    rules = {name: float(np.mean(pred == labels)) for name, pred in decision_rules(probs).items()}
    results = earlier_entries("medmnist_cv", "results", {args.set})
    results[args.set] = {
        "folds": args.folds, "n": int(len(labels)), "fold_seconds_total": round(seconds, 1),
        "pooled": {k: pooled.get(k) for k in ("auc", "accuracy", "balanced_accuracy", "quadratic_kappa", "ece",
                                              "confusion_matrix")},
        "ci95": intervals, "accuracy_by_decision_rule": rules if ordinal else {"argmax": rules["argmax"]},
        "per_fold": per_fold, "published_test": PUBLISHED_TEST[args.set], "network": plan["network"],
        "budget_minutes": plan["budget_minutes"], "load_before": load_before, "load_after": load_average()}
    path = write_results("medmnist_cv", {"data": str(SHARED_DATA / "medmnist"),
                                         "split": f"{args.folds}-fold CV over the training split",
                                         "threads": args.threads, "results": results})
    table = [[args.set, f"{pooled['auc']:.3f} ({intervals['auc'][0]:.3f}-{intervals['auc'][1]:.3f})",
              f"{pooled['accuracy']:.3f} ({intervals['accuracy'][0]:.3f}-{intervals['accuracy'][1]:.3f})",
              pooled.get("quadratic_kappa") or "-",
              f"{PUBLISHED_TEST[args.set]['auc']} / {PUBLISHED_TEST[args.set]['accuracy']}", round(seconds)]]
    print(format_table(["set", "out-of-fold AUC (95% CI)", "ACC (95% CI)", "kappa", "published test AUC / ACC",
                        "seconds"], table))
    print(f"written {path}")


if __name__ == "__main__":
    main()
