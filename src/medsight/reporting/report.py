"""``report.html``: a self-contained page with the plan, learning curves, metrics and task plots."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from medsight.datasets.manifest import atomic_write_text
from medsight.errors import InputError
from medsight.planning.plan import load_plan, summary_table
from medsight.reporting import figures
from medsight.reporting.cam_figures import cam_section
from medsight.reporting.detection_curves import class_curves, froc_figure, pr_figure
from medsight.reporting.detection_examples import examples_section
from medsight.reporting.safe import FigureSkipped, guarded, note
from medsight.reporting.segmentation_overlays import case_dice, overlay_section
from medsight.reporting.sources import Sources, find_sources

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}pre{background:#f7f7f7;padding:.8em}h2{border-bottom:1px solid #ddd}
img{vertical-align:top;margin:2px}p.note{color:#876;font-size:13px;margin:.3em 0}"""


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (float, int)) or x is None for x in v):
        return "[" + ", ".join("-" if x is None else f"{x:.3f}" for x in v) + "]"
    return str(v)


def _read_logs(run_dir: Path) -> dict[str, list[dict]]:
    logs = {}
    for d in sorted(run_dir.glob("fold_*")):
        path = d / "log.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if rows:
                logs[d.name] = rows
    return logs


def _metric_section(metrics: dict, sources: Sources, run_dir: Path) -> list[str]:
    """Summary tables and the task's own plots for a metrics.json; a figure that cannot be drawn is a note."""
    parts = []
    task = metrics.get("task")
    if task == "classification":
        s = metrics["summary"]
        rows = [[k, s[k]] for k in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity",
                                    "quadratic_weighted_kappa", "ece") if s.get(k) is not None]
        ci = metrics.get("ci95", {})
        rows = [[k, v, ci.get(k, {}).get("ci95", "")] for k, v in rows]
        parts.append(_table(rows, ["metric", "value", "95% CI (bootstrap)"]))
        parts.append(guarded("classification plots", lambda: _classification_plots(metrics)))
        parts.append("<h3>Class-activation maps</h3>")
        parts.append(guarded("class-activation maps", lambda: cam_section(metrics, sources, run_dir)))
    elif task == "segmentation":
        rows = []
        for struct, ms in metrics["summary"].items():
            for name, v in ms.items():
                rows.append([struct, name, v["mean"], v["median"], v["ci95"]])
        parts.append(_table(rows, ["structure", "metric", "mean", "median", "95% CI of the mean"]))
        dice = [d for d in (case_dice(c) for c in metrics.get("per_case", [])) if np.isfinite(d)]
        parts.append(guarded("Dice histogram", lambda: _dice_histogram(dice)))
        parts.append("<h3>Best, median and worst cases (mean Dice): reference outlined, prediction tinted</h3>")
        parts.append(guarded("segmentation overlays", lambda: overlay_section(metrics, sources)))
    elif task == "detection":
        parts.append(_detection_table(metrics))
        curves: dict = {}

        def load_curves() -> str:
            curves.update(class_curves(metrics, sources))
            return ""

        parts.append(guarded("precision-recall and FROC curves", load_curves))
        if curves:
            rates = metrics.get("summary", {}).get("fp_rates")
            parts.append(guarded("precision-recall curves", lambda: pr_figure(curves)))
            parts.append(guarded("FROC curve", lambda: froc_figure(curves, rates)))
        parts.append("<h3>Validation images: reference and predicted boxes</h3>")
        parts.append(guarded("detection examples", lambda: examples_section(metrics, sources)))
    else:
        parts.append(f"<pre>{html.escape(json.dumps(metrics.get('summary', metrics), indent=1)[:5000])}</pre>")
    return parts


def _dice_histogram(dice: list[float]) -> str:
    if not dice:
        raise FigureSkipped("no case has a Dice score")
    return figures.histogram_figure(dice, "Dice per case", "mean Dice over structures")


def _detection_table(metrics: dict) -> str:
    """Per class and mean: AP@0.5, COCO mAP, CPM (IoU hits, centre-in-box hits) with 95% intervals, counts."""
    rows = []
    for name, v in (metrics.get("per_class") or {}).items():
        rows.append([name, v.get("ap50"), v.get("ap50_ci95") or "", v.get("map_coco"), v.get("cpm"),
                     v.get("cpm_ci95") or "", v.get("cpm_centre"), v.get("n_gt"), v.get("n_detections")])
    s = metrics.get("summary", {})
    if s:
        get = lambda k, f: (s.get(k) or {}).get(f)  # noqa: E731
        rows.append(["mean", get("ap50", "value"), get("ap50", "ci95") or "", get("map_coco", "value"),
                     get("cpm", "value"), get("cpm", "ci95") or "", get("cpm_centre", "value"), s.get("n_gt"),
                     s.get("n_detections")])
    return _table([["-" if c is None else c for c in r] for r in rows],
                  ["class", "AP@0.5", "95% CI", "COCO mAP", "CPM (IoU 0.5)", "95% CI", "CPM (centre in box)",
                   "boxes", "detections"])


def _covariate_table(decisions: dict[str, dict]) -> str:
    """Each fold's covariate model (``decisions``: fold -> its decisions.json) as odds ratios (binary tasks):
    what age, sex, ... say on their own."""
    from medsight.classification.covariates import odds_ratios

    per_fold = {fold: ratios for fold, dec in decisions.items()
                if dec.get("covariate_model") and (ratios := odds_ratios(dec["covariate_model"]))}
    if not per_fold:
        return ""
    columns = list(dict.fromkeys(c for ratios in per_fold.values() for c in ratios))
    rows = [[c, *[per_fold[f].get(c, "-") for f in per_fold]] for c in columns]
    return ("<h3>Covariate models</h3><p>Odds ratio of the second class per column of each fold's logistic "
            "regression on the covariates alone: per standard deviation of a numeric covariate (and for a "
            "missing value), per level of a categorical one against none of its levels.</p>"
            + _table(rows, ["covariate", *per_fold]))


def _classification_plots(metrics: dict) -> str:
    from medsight.evaluation.classification import reliability_curve, roc_curve_points

    cases = metrics.get("per_case", [])
    if not cases:
        return ""
    cols = [k for k in cases[0] if k.startswith("prob_")]
    names = [c[5:] for c in cols]
    y = np.array([names.index(c["reference"]) for c in cases])
    probs = np.array([[c[k] for k in cols] for c in cases])
    out = []
    if len(cols) == 2 and len(np.unique(y)) == 2:
        pts = roc_curve_points(y, probs[:, 1])
        out.append(figures.roc_figure({names[1]: (pts["fpr"], pts["tpr"], metrics["summary"]["auc"])}))
    matrix = np.asarray(metrics["summary"].get("confusion_matrix", []))
    if matrix.size:
        out.append(figures.confusion_figure(matrix, names))
    rc = reliability_curve(y, probs)
    out.append(figures.reliability_figure(np.asarray(rc["confidence"]), np.asarray(rc["accuracy"]), np.asarray(rc["count"])))
    return "".join(out)


def write_report(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report.html`` and return its path."""
    if not (run_dir / "plan.json").is_file() or not (run_dir / "run.json").is_file():
        hint = "a dataset's runs are in DATASET_DIR/run" if (run_dir / "manifest.json").is_file() else None
        raise InputError("not a medsight run folder (no plan.json and run.json)", path=run_dir, fix=hint)
    plan = load_plan(run_dir)
    parts = [f"<h1>medsight report: {html.escape(run_dir.name)}</h1>",
             f"<h2>Plan</h2><pre>{html.escape(summary_table(plan))}</pre>"]
    logs = _read_logs(run_dir)
    if logs:
        parts.append("<h2>Training</h2>" + figures.learning_curves(logs))
        rows, fused, decisions = [], bool(plan.get("covariates")), {}
        for fold, rs in logs.items():
            last = rs[-1]
            dec_path = run_dir / fold / "decisions.json"
            dec = decisions[fold] = json.loads(dec_path.read_text()) if dec_path.is_file() else {}
            rows.append([fold, len(rs), last["train_loss"], last.get("val_score", ""), dec.get("train_seconds")]
                        + ([dec.get("validation_auc_images", "-"), dec.get("validation_auc_with_covariates", "-")]
                           if fused else []))
        parts.append(_table(rows, ["fold", "epochs", "final train loss", "final validation score", "seconds"]
                            + (["validation AUC, images", "with covariates"] if fused else [])))
        if fused:
            parts.append(guarded("covariate models", lambda: _covariate_table(decisions)))
    metric_files = sorted(run_dir.glob("**/metrics.json"))
    for mf in metric_files:
        rel = str(mf.relative_to(run_dir))
        try:
            metrics = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError) as e:
            parts.append(f"<h2>Metrics: {html.escape(rel)}</h2>" + note("metrics", e))
            continue
        parts.append(f"<h2>Metrics: {html.escape(rel)} ({metrics.get('num_cases')} cases)</h2>")
        parts.append(guarded(f"metrics of {rel}", lambda: "".join(
            _metric_section(metrics, find_sources(mf, metrics, run_dir), run_dir))))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>medsight report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    return path
