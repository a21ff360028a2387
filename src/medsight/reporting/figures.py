"""Matplotlib figures rendered to base64 PNG for a self-contained HTML page."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure_to_img_tag(fig, alt: str) -> str:
    """The figure as an ``<img>`` with embedded PNG data; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}"/>'


def learning_curves(logs: dict[str, list[dict]]) -> str:
    """Training loss and validation score per epoch, one line per fold."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for fold, rows in logs.items():
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, [r["train_loss"] for r in rows], label=fold)
        vals = [(r["epoch"], r["val_score"]) for r in rows if r.get("val_score") is not None]
        if vals:
            axes[1].plot(*zip(*vals), marker=".", label=fold)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title="validation score", xlabel="epoch")
    for a in axes:
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=8)
    return figure_to_img_tag(fig, "learning curves")


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> str:
    """ROC curves: name -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(fontsize=8)
    return figure_to_img_tag(fig, "ROC curve")


def confusion_figure(matrix: np.ndarray, names: list[str]) -> str:
    """A confusion matrix (rows: reference, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(names), 1 + 0.6 * len(names)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="reference", title="confusion matrix")
    return figure_to_img_tag(fig, "confusion matrix")


def reliability_figure(conf: np.ndarray, acc: np.ndarray, counts: np.ndarray) -> str:
    """Reliability diagram: accuracy against confidence per bin."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    keep = counts > 0
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.plot(conf[keep], acc[keep], marker="o")
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability")
    return figure_to_img_tag(fig, "reliability diagram")


def histogram_figure(values: list[float], title: str, xlabel: str) -> str:
    """Distribution of a per-case metric."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.hist(values, bins=min(20, max(5, len(values))), color="#4a7")
    ax.set(title=title, xlabel=xlabel, ylabel="cases")
    return figure_to_img_tag(fig, title)
