"""Detection report figures: precision-recall curves per class and the FROC curve (log false positives per image).

The curves come from ``metrics.json`` (``per_class[name]["pr_curve"]`` / ``["froc_curve"]``, kept by
:func:`medsight.detection.metrics.detection_report`); a metrics file without them is recomputed from
``detections.csv`` and the manifest's boxes.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from medsight.reporting.figures import figure_to_img_tag
from medsight.reporting.safe import FigureSkipped
from medsight.reporting.sources import Sources


def class_curves(metrics: dict, sources: Sources | None = None) -> dict[str, dict]:
    """Per class: ``recall``, ``precision``, ``fps_per_image``, ``sensitivity`` (arrays), ``ap50``, ``cpm``, ``n_gt``."""
    per_class = metrics.get("per_class") or {}
    if not per_class or any("pr_curve" not in v or "froc_curve" not in v for v in per_class.values()):
        per_class = _recomputed(metrics, sources)
    out = {}
    for name, v in per_class.items():
        if not v.get("n_gt"):
            continue  # a class without reference boxes has no recall
        out[name] = {"recall": np.asarray(v["pr_curve"]["recall"], float),
                     "precision": np.asarray(v["pr_curve"]["precision"], float),
                     "fps_per_image": np.asarray(v["froc_curve"]["fps_per_image"], float),
                     "sensitivity": np.asarray(v["froc_curve"]["sensitivity"], float),
                     "ap50": v.get("ap50"), "cpm": v.get("cpm"), "n_gt": int(v["n_gt"])}
    if not out:
        raise FigureSkipped("no class has reference boxes")
    return out


def _recomputed(metrics: dict, sources: Sources | None) -> dict:
    """Per-class curves from detections.csv and the manifest (for metrics files written without them)."""
    from medsight.detection.metrics import detection_report
    from medsight.reporting.detection_data import load_detections

    if sources is None:
        raise FigureSkipped("metrics.json holds no curves and the predictions were not given")
    cases = [c["case"] for c in metrics.get("per_case", [])]
    if not cases:
        raise FigureSkipped("metrics.json holds no curves and lists no cases")
    data = load_detections(sources, cases)
    return detection_report(data.detections, data.truth, data.class_names, n_boot=0)["per_class"]


def pr_figure(curves: dict[str, dict]) -> str:
    """Precision against recall per class (IoU 0.5), AP@0.5 in the legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for name, c in curves.items():
        if c["recall"].size == 0:
            continue
        recall = np.concatenate([[0.0], c["recall"]])
        precision = np.concatenate([[c["precision"][0]], c["precision"]])
        ap = "-" if c["ap50"] is None else f"{c['ap50']:.3f}"
        line, = ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP@0.5 {ap}, {c['n_gt']} boxes)")
        ax.plot(recall[-1:], precision[-1:], "o", color=line.get_color(), ms=4)  # every detection counted
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall (IoU 0.5)", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower left")
    return figure_to_img_tag(fig, "precision-recall curves")


def froc_figure(curves: dict[str, dict], fp_rates: list[float] | None = None) -> str:
    """Sensitivity against false positives per image (log axis) per class, CPM in the legend; the rates the
    CPM averages are marked."""
    from medsight.evaluation.detection import FROC_RATES

    rates = list(fp_rates or FROC_RATES)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    low = min(rates) / 2
    right = max([rates[-1] * 1.5] + [float(c["fps_per_image"].max()) * 1.2 for c in curves.values()
                                     if c["fps_per_image"].size])
    for name, c in curves.items():
        fps, sens = c["fps_per_image"], c["sensitivity"]
        if fps.size == 0:
            continue
        # the (0 false positives) start sits at the left edge of the log axis; the last sensitivity holds
        # for any larger rate, so the curve runs on to the right edge
        fps = np.append(np.maximum(fps, low), right)
        sens = np.append(sens, sens[-1])
        cpm = "-" if c["cpm"] is None else f"{c['cpm']:.3f}"
        ax.plot(fps, sens, drawstyle="steps-post", label=f"{name} (CPM {cpm})")
    for r in rates:
        ax.axvline(r, color="k", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set(xlabel="false positives per image", ylabel="sensitivity", title="FROC (IoU 0.5)", xlim=(low, right),
           ylim=(0, 1.02))
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    return figure_to_img_tag(fig, "FROC curve")
