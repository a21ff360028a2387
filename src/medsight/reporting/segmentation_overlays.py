"""Segmentation report figures: prediction and reference contours on the image for the best, median and
worst cases by mean Dice (3D: the axial slice with the most reference foreground, else the most predicted)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from medsight.reporting.display import display_plane, imshow_kwargs, oriented, plane_of
from medsight.reporting.figures import figure_to_img_tag
from medsight.reporting.ranking import best_median_worst
from medsight.reporting.safe import FigureSkipped, guarded
from medsight.reporting.sources import Sources

COLOURS = plt.get_cmap("tab10").colors


def case_dice(entry: dict) -> float:
    """Mean Dice over the structures of one ``per_case`` entry of a segmentation metrics.json (nan if none)."""
    values = [m.get("dice") for m in entry.get("metrics", {}).values()]
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def pick_cases(per_case: list[dict]) -> list[tuple[str, str, float]]:
    """``(rank, case id, mean Dice)`` of the best, median and worst cases (fewer when there are fewer cases)."""
    scored = [(case_dice(c), c["case"]) for c in per_case]
    scored = sorted([s for s in scored if np.isfinite(s[0])], key=lambda s: (-s[0], s[1]))
    if not scored:
        return []
    return [(rank, scored[i][1], scored[i][0]) for rank, i in best_median_worst(len(scored))]


def pick_slice(reference: np.ndarray, prediction: np.ndarray) -> int | None:
    """Axial slice (last axis) of a 3D case with the most reference foreground, else the most predicted,
    else the middle one; None for 2D."""
    if reference.ndim != 3:
        return None
    for mask in (reference > 0, prediction > 0):
        area = mask.sum(axis=(0, 1))
        if area.max() > 0:
            return int(np.argmax(area))
    return reference.shape[-1] // 2


def prediction_file(folder: Path, case_id: str) -> Path:
    """The prediction ``<case><extension>`` of a case in ``folder`` (matched as ``medsight evaluate`` does)."""
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.split(".")[0] == case_id and not p.name.endswith((".csv", ".json", ".html")):
            return p
    raise FigureSkipped(f"no prediction file for case {case_id!r} in {folder}")


def overlay_figure(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, names: dict[int, str],
                   title: str) -> str:
    """An ``<img>``: the image (C, *spatial) with the prediction as a colour tint and the reference as an
    outline, one colour per label."""
    if reference.shape != prediction.shape or reference.shape != image.shape[1:]:
        raise FigureSkipped(f"image {image.shape[1:]}, reference {reference.shape} and prediction "
                            f"{prediction.shape} differ in shape")
    index = pick_slice(reference, prediction)
    nd = reference.ndim
    place = imshow_kwargs(nd)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(oriented(display_plane(image, index), nd), cmap="gray", interpolation="nearest", **place)
    ref_plane = oriented(plane_of(reference, index), nd)
    pred_plane = oriented(plane_of(prediction, index), nd)
    tint = np.zeros((*pred_plane.shape, 4), np.float32)
    handles = []
    for n, (value, name) in enumerate(sorted(names.items())):
        colour = COLOURS[n % len(COLOURS)]
        tint[pred_plane == value] = (*colour, 0.4)
        mask = ref_plane == value
        if mask.any() and not mask.all():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.3, **place)
        handles.append(Patch(facecolor=(*colour, 0.4), edgecolor=colour, label=name))
    ax.imshow(tint, interpolation="nearest", **place)
    handles.append(Line2D([], [], color="w", label="outline: reference, tint: prediction"))
    ax.legend(handles=handles, fontsize=6, loc="lower right", framealpha=0.7)
    ax.set_title(title + (f"\naxial slice {index}" if index is not None else ""), fontsize=9)
    ax.set_axis_off()
    return figure_to_img_tag(fig, title)


def overlay_section(metrics: dict, sources: Sources) -> str:
    """HTML of the best/median/worst overlays; a case that cannot be drawn gets a one-line note instead."""
    from medsight.datasets.loading import read_case_image, read_case_label
    from medsight.io import read_image

    picks = pick_cases(metrics.get("per_case", []))
    if not picks:
        raise FigureSkipped("no case has a Dice score")
    folder = sources.predictions_dir()
    manifest = sources.manifest
    parts = []
    for rank, case_id, dice in picks:
        title = f"{rank}: {case_id} (mean Dice {dice:.3f})"

        def draw(case_id: str = case_id, title: str = title) -> str:
            case = sources.case(case_id)
            image = read_case_image(case, manifest).array
            ref = read_case_label(case, manifest)
            if ref is None:
                raise FigureSkipped(f"case {case_id!r} has no reference mask")
            pred = read_image(prediction_file(folder, case_id)).array[0]
            names = {int(v): n for v, n in manifest.labels.items() if int(v) != 0}
            return overlay_figure(image, ref.array[0], pred, names, title)

        parts.append(guarded(title, draw))
    return "".join(parts)
