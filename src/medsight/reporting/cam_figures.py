"""Classification report figures: Grad-CAM of the run's networks over a few validation images
(two confident correct cases, true positives first, and the two most confident errors)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from medsight.reporting.cam import cam_peak, grad_cam
from medsight.reporting.display import display_plane, imshow_kwargs, oriented, plane_of
from medsight.reporting.figures import figure_to_img_tag
from medsight.reporting.safe import FigureSkipped, guarded
from medsight.reporting.sources import Sources


def _prob_columns(entry: dict) -> list[str]:
    return [k for k in entry if k.startswith("prob_")]


def outcome(entry: dict, columns: list[str]) -> str:
    """TP / TN / FP / FN for a binary problem (positive = the second class), else ``correct`` / ``error``."""
    ok = entry["reference"] == entry["predicted"]
    if len(columns) != 2:
        return "correct" if ok else "error"
    positive = entry["predicted"] == columns[1][5:]
    return ("T" if ok else "F") + ("P" if positive else "N")


def pick_cases(per_case: list[dict], n_correct: int = 2, n_errors: int = 2) -> list[tuple[str, dict]]:
    """``(outcome, entry)`` of the most confident correct cases (true positives first) and the most
    confident errors, from a classification metrics.json's ``per_case``."""
    if not per_case:
        return []
    columns = _prob_columns(per_case[0])

    def confidence(e: dict) -> float:
        key = f"prob_{e['predicted']}"
        return float(e.get(key, max(e[c] for c in columns)))

    ranked = sorted(per_case, key=lambda e: (-confidence(e), e["case"]))
    labelled = [(outcome(e, columns), e) for e in ranked]
    correct = [t for t in labelled if t[0] in ("TP", "correct")] + [t for t in labelled if t[0] == "TN"]
    errors = [t for t in labelled if t[0] in ("FP", "FN", "error")]
    return correct[:n_correct] + errors[:n_errors]


def target_index(entry: dict) -> int:
    """Index (in the class order of the probability columns) of the predicted class."""
    columns = _prob_columns(entry)
    key = f"prob_{entry['predicted']}"
    return columns.index(key) if key in columns else int(np.argmax([entry[c] for c in columns]))


def cam_figure(image: np.ndarray, cam: np.ndarray, title: str) -> str:
    """An ``<img>``: the network-space image (C, *spatial) beside it with the CAM overlaid and its peak marked;
    a 3D image shows the axial slice through the CAM's peak."""
    nd = cam.ndim
    peak = cam_peak(cam)
    index = peak[-1] if nd == 3 else None
    place = imshow_kwargs(nd)
    plane = oriented(display_plane(image, index), nd)
    heat = oriented(plane_of(cam, index), nd)
    fig, axes = plt.subplots(1, 2, figsize=(5.6, 3.0))
    axes[0].imshow(plane, cmap="gray", interpolation="nearest", **place)
    axes[1].imshow(plane, cmap="gray", interpolation="nearest", **place)
    axes[1].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear", **place)
    py, px = (peak[1], peak[0]) if nd == 3 else (peak[0], peak[1])  # drawn (row, column) of the peak
    axes[1].plot([px], [py], "w+", ms=10, mew=1.5)
    axes[0].set_title("image", fontsize=8)
    axes[1].set_title("Grad-CAM (predicted class)", fontsize=8)
    for a in axes:
        a.set_axis_off()
    fig.suptitle(title, fontsize=8)
    return figure_to_img_tag(fig, title)


def _held_out_by(run_dir: Path) -> dict[str, str]:
    """Case id -> the fold whose validation cases held it, for runs of more than one fold (else empty)."""
    import json

    folds = {}
    for d in sorted(run_dir.glob("fold_*")):
        decisions = d / "decisions.json"
        if decisions.is_file():
            folds[d.name[len("fold_"):]] = json.loads(decisions.read_text()).get("validation_cases", [])
    if len(folds) < 2:
        return {}
    return {case: fold for fold, cases in folds.items() for case in cases}


def cam_section(metrics: dict, sources: Sources, run_dir: Path, n_correct: int = 2, n_errors: int = 2) -> str:
    """HTML: Grad-CAM figures of the picked validation cases (the run's fold models, on the CPU)."""
    import torch

    from medsight.api import load_run
    from medsight.datasets.loading import read_case_image
    from medsight.preprocessing.pipeline import preprocess_image

    picks = pick_cases(metrics.get("per_case", []), n_correct, n_errors)
    if not picks:
        raise FigureSkipped("metrics.json lists no cases")
    if sources.manifest is None:
        raise FigureSkipped("the reference dataset (manifest.json) was not found")
    try:
        _, plan, _, models, _ = load_run(run_dir, torch.device("cpu"))
    except Exception as e:  # noqa: BLE001  (a run without checkpoints has no CAM, and that is all)
        raise FigureSkipped(f"the run's networks could not be loaded ({e})") from None
    held_out_by = _held_out_by(run_dir)
    fold_models: dict[str, list] = {}

    def models_for(case_id: str) -> list:
        """The network of the fold that held the case out (cross-validation), else every network of the run."""
        fold = held_out_by.get(case_id)
        if fold is None:
            return models
        if fold not in fold_models:
            fold_models[fold] = load_run(run_dir, torch.device("cpu"), folds=[fold])[3]
        return fold_models[fold]

    parts = ["<p>Grad-CAM on the last convolutional stage, for the predicted class, averaged over the run's "
             "networks (in a cross-validated run, the network of the fold that held the case out); drawn on "
             "the preprocessed image the network saw.</p>"]
    labels = sources.manifest.labels
    named = lambda token: f"{token} ({labels[token]})" if token in labels and labels[token] != token else token  # noqa: E731
    for kind, entry in picks:
        p = entry.get(f"prob_{entry['predicted']}")
        title = (f"{kind}: {entry['case']}, reference {named(entry['reference'])}, predicted "
                 f"{named(entry['predicted'])}" + (f", p={p:.2f}" if p is not None else "")
                 + (f", fold {held_out_by[entry['case']]} (held it out)" if entry["case"] in held_out_by else ""))

        def draw(entry: dict = entry, title: str = title) -> str:
            image = read_case_image(sources.case(entry["case"]), sources.manifest)
            array, _, _ = preprocess_image(image, plan)
            cam = grad_cam(models_for(entry["case"]), array, target_index(entry))
            return cam_figure(array, cam, title)

        parts.append(guarded(title, draw))
    return "".join(parts)
