"""Files of a ``medsight compare`` run: the table (CSV), everything (JSON), out-of-fold predictions, HTML."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from medsight.datasets.manifest import atomic_write_text
from medsight.tasks.base import write_csv

TABLE_FIELDS = ["strategy", "auc", "auc_ci95_low", "auc_ci95_high", "mean_fold_auc", "seconds",
                "p_value_vs_best", "recommended", "auc_images_only", "p_value_covariates"]


def table_rows(report: dict) -> list[dict]:
    """One row per strategy: AUC, its interval, mean fold AUC, wall time, p-value against the best."""
    advice = report["recommendation"]
    rows = []
    for name, s in report["strategies"].items():
        p = advice["p_value_against_best"].get(name)
        rows.append({"strategy": name, "auc": f"{s['auc']:.4f}", "auc_ci95_low": f"{s['auc_ci95'][0]:.4f}",
                     "auc_ci95_high": f"{s['auc_ci95'][1]:.4f}", "mean_fold_auc": f"{s['mean_fold_auc']:.4f}",
                     "seconds": f"{s['seconds']:.1f}", "p_value_vs_best": "" if p is None else f"{p:.4f}",
                     "recommended": "yes" if name == advice["strategy"] else "",
                     "auc_images_only": f"{s['auc_images_only']:.4f}" if "auc_images_only" in s else "",
                     "p_value_covariates": f"{s['p_value_covariates']:.4f}" if "p_value_covariates" in s else ""})
    return rows


def write_outputs(out: Path, report: dict, ids: list[str], y: np.ndarray, oof: dict[str, np.ndarray],
                  covered: np.ndarray) -> list[Path]:
    """Write compare.csv, compare.json, oof_predictions.csv and compare.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(out / "compare.csv", table_rows(report), TABLE_FIELDS)]
    path = out / "compare.json"
    atomic_write_text(path, json.dumps(_plain(report), indent=1))
    paths.append(path)
    names = report["class_names"]
    fields = ["case", "reference"] + [f"{s}_prob_{c}" for s in oof for c in names]
    rows = []
    for i in covered:
        row = {"case": ids[i], "reference": names[int(y[i])]}
        for s, probs in oof.items():
            row.update({f"{s}_prob_{c}": f"{probs[i, j]:.6f}" for j, c in enumerate(names)})
        rows.append(row)
    paths.append(write_csv(out / "oof_predictions.csv", rows, fields))
    path = out / "compare.html"
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>medsight compare</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
            "th{background:#f3f3f3}</style></head><body>"
            + html_section(report, y[covered], {s: p[covered] for s, p in oof.items()}) + "</body></html>")
    atomic_write_text(path, page)
    paths.append(path)
    return paths


def html_section(report: dict, y: np.ndarray, oof: dict[str, np.ndarray]) -> str:
    """The comparison as an HTML section: table, recommendation, paired tests, ROC curves (binary)."""
    from medsight.evaluation.classification import roc_curve_points
    from medsight.reporting.figures import roc_figure

    plan = report["plan"]
    parts = [f"<h2>Transfer-learning strategies on the same folds ({report['num_cases']} cases, "
             f"folds {report['folds']}, {report['label_fraction']:g} of the labels)</h2>",
             f"<p>Images at {plan['side']} px; {plan['epochs']} epochs per trained strategy; budget "
             f"{plan['budget_minutes']} min. AUC of the pooled out-of-fold predictions with its stratified "
             "bootstrap 95% interval.</p>"]
    covariates = report.get("covariates")
    if covariates:
        lo, hi = covariates["auc_alone_ci95"]
        parts.append(f"<p>Clinical covariates ({html.escape(', '.join(covariates['kinds']))}) are fused into every "
                     "strategy's probabilities as independent evidence (a logistic regression on them, fitted on "
                     f"each training fold). The covariates alone: AUC {covariates['auc_alone']:.3f} "
                     f"[{lo:.3f}, {hi:.3f}]; each strategy from its images alone: column auc_images_only, and the "
                     "paired test of the strategy with against without them: p_value_covariates.</p>")
    rows = table_rows(report)
    parts.append(_html_table([[r[f] for f in TABLE_FIELDS] for r in rows], TABLE_FIELDS))
    advice = report["recommendation"]
    parts.append(f"<p><b>Recommendation: {html.escape(advice['strategy'])}</b>: {html.escape(advice['reason'])}.</p>")
    tests = report.get("paired_tests", [])
    if tests:
        parts.append("<h3>Paired tests</h3>")
        parts.append(_html_table([[t["a"], t["b"], f"{t['difference']:+.4f}", t["test"], f"{t['p_value']:.4f}"]
                                  for t in tests], ["strategy A", "strategy B", "AUC A - B", "test", "p-value"]))
    if all(p.shape[1] == 2 for p in oof.values()) and len(np.unique(y)) == 2:
        curves = {}
        for s, probs in oof.items():
            pts = roc_curve_points(y, probs[:, 1])
            curves[s] = (pts["fpr"], pts["tpr"], report["strategies"][s]["auc"])
        parts.append("<h3>ROC curves (pooled out-of-fold)</h3>" + roc_figure(curves))
    return "".join(parts)


def _html_table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plain(x):
    """JSON-ready copy: numpy values to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
