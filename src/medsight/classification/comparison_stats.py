"""Statistics of a transfer-learning comparison: AUC with bootstrap 95% intervals, paired tests, recommendation.

Every strategy predicts every case exactly once (out of fold, on the same folds), so the pooled
out-of-fold scores of two strategies are paired case by case: DeLong's test for binary problems, a
paired bootstrap of the macro AUC otherwise.
"""
from __future__ import annotations

import itertools

import numpy as np

from medsight.evaluation.bootstrap import bootstrap_ci, paired_bootstrap_test
from medsight.evaluation.classification import delong_test, roc_auc


def strategy_summary(y: np.ndarray, probs: np.ndarray, fold_of_case: np.ndarray, n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """Pooled out-of-fold AUC with its stratified bootstrap 95% interval, and the AUC of each fold."""
    auc, low, high = bootstrap_ci(roc_auc, y, probs, n_boot=n_boot, seed=seed, stratify=y)
    per_fold = []
    for k in np.unique(fold_of_case):
        sel = fold_of_case == k
        try:
            per_fold.append(roc_auc(y[sel], probs[sel]))
        except ValueError:
            per_fold.append(float("nan"))
    return {"auc": auc, "auc_ci95": [low, high], "fold_aucs": per_fold,
            "mean_fold_auc": float(np.nanmean(per_fold)) if per_fold else float("nan")}


def paired_tests(y: np.ndarray, probs: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Every pair of strategies: AUC difference and two-sided p-value (DeLong when binary, else paired bootstrap)."""
    rows = []
    for a, b in itertools.combinations(probs, 2):
        if probs[a].shape[1] == 2:
            auc_a, auc_b, z, p = delong_test(y, probs[a][:, 1], probs[b][:, 1])
            test = "DeLong"
        else:
            auc_a, auc_b = roc_auc(y, probs[a]), roc_auc(y, probs[b])
            p = paired_bootstrap_test(roc_auc, y, probs[a], probs[b], n_boot=n_boot, seed=seed, stratify=y)
            z, test = None, "paired bootstrap"
        rows.append({"a": a, "b": b, "auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b, "z": z,
                     "p_value": p, "test": test})
    return rows


def recommend(summaries: dict[str, dict], tests: list[dict], seconds: dict[str, float], alpha: float = 0.05) -> dict:
    """The cheapest strategy whose AUC is not significantly below the best one's (paired test at ``alpha``)."""
    best = max(summaries, key=lambda s: summaries[s]["auc"])
    p_vs_best = {best: 1.0}
    for t in tests:
        if best in (t["a"], t["b"]):
            other = t["b"] if t["a"] == best else t["a"]
            p_vs_best[other] = t["p_value"]
    tied = [s for s in summaries if p_vs_best.get(s, 0.0) >= alpha]
    choice = min(tied, key=lambda s: seconds.get(s, float("inf")))
    if choice == best:
        reason = (f"{best} has the highest AUC ({summaries[best]['auc']:.3f})"
                  + ("" if len(tied) == 1 else "; strategies not significantly worse are not cheaper"))
    else:
        reason = (f"{best} has the highest AUC ({summaries[best]['auc']:.3f}) but {choice} "
                  f"({summaries[choice]['auc']:.3f}) is not significantly worse (p = {p_vs_best[choice]:.2f}) "
                  f"and takes {seconds[choice]:.0f} s instead of {seconds[best]:.0f} s")
    return {"strategy": choice, "best_auc_strategy": best, "reason": reason,
            "p_value_against_best": {s: p_vs_best.get(s) for s in summaries}}
