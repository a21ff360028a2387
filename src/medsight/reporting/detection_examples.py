"""Detection report figures: validation images with reference boxes and the predicted boxes scoring above
the best-F1 threshold (the best, median and worst images by F1 at that threshold)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from medsight.reporting.detection_data import DetectionData, best_f1_threshold, image_counts, load_detections
from medsight.reporting.display import display_plane, imshow_kwargs, oriented
from medsight.reporting.figures import figure_to_img_tag
from medsight.reporting.safe import FigureSkipped, guarded
from medsight.reporting.ranking import best_median_worst
from medsight.reporting.sources import Sources

COLOURS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#e377c2", "#17becf", "#8c564b")  # no green: truth is green
TRUTH_COLOUR = "#00e000"


def pick_images(counts: list[tuple[int, int, int]], n: int = 3) -> list[tuple[str, int]]:
    """``(rank, image index)`` of the best, median and worst images by F1 (up to ``n``), among images with
    a reference box or a detection."""
    f1 = [(2 * tp / (2 * tp + fp + fn), i) for i, (tp, fp, fn) in enumerate(counts) if tp + fp + fn > 0]
    f1.sort(key=lambda t: (-t[0], t[1]))
    if not f1:
        return []
    picks = best_median_worst(len(f1))
    if n < len(picks):
        picks = [p for p in picks if p[0] != "median"][:n]
    return [(rank, f1[j][1]) for rank, j in picks]


def _slice_index(truth_boxes: np.ndarray, det_boxes: np.ndarray, shape: tuple[int, ...]) -> int:
    """Axial slice of a 3D image through the centre of the first reference box (else detection, else middle)."""
    for boxes in (truth_boxes, det_boxes):
        if len(boxes):
            return int(np.clip((boxes[0, 2] + boxes[0, 5]) / 2, 0, shape[-1] - 1))
    return shape[-1] // 2


def boxes_figure(image: np.ndarray, truth: tuple[np.ndarray, np.ndarray], dets: tuple[np.ndarray, np.ndarray, np.ndarray],
                 class_names: list[str], title: str) -> str:
    """An ``<img>``: the image (C, *spatial) with reference boxes (green, solid) and detections (class colour,
    dashed, with score); a 3D image shows the axial slice through its first reference box."""
    nd = image.ndim - 1
    gt_boxes, gt_names = truth
    boxes, scores, names = dets
    index = _slice_index(gt_boxes, boxes, image.shape[1:]) if nd == 3 else None
    place = imshow_kwargs(nd)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(oriented(display_plane(image, index), nd), cmap="gray", interpolation="nearest", **place)

    def crosses(b: np.ndarray) -> bool:
        return nd == 2 or b[2] <= index + 0.5 < b[5] or b[2] <= index < b[5]

    for b in gt_boxes:
        if crosses(b):
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[nd] - b[0], b[nd + 1] - b[1], fill=False,
                                   ec=TRUTH_COLOUR, lw=1.6))
    colour = {n: COLOURS[k % len(COLOURS)] for k, n in enumerate(class_names)}
    for b, s, n in zip(boxes, scores, names):
        if crosses(b):
            c = colour.get(str(n), "r")
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[nd] - b[0], b[nd + 1] - b[1], fill=False, ec=c,
                                   lw=1.2, ls="--"))
            ax.text(b[0], b[1] - 1, f"{n} {s:.2f}", color=c, fontsize=6, va="bottom" if nd == 2 else "top")
    handles = [Line2D([], [], color=TRUTH_COLOUR, label="reference")]
    handles += [Line2D([], [], color=colour[n], ls="--", label=f"predicted {n}") for n in class_names]
    ax.legend(handles=handles, fontsize=6, loc="upper right", framealpha=0.7)
    ax.set_title(title + (f"\naxial slice {index}" if index is not None else ""), fontsize=8)
    ax.set_axis_off()
    return figure_to_img_tag(fig, title)


def examples_section(metrics: dict, sources: Sources, n: int = 3) -> str:
    """HTML: the threshold used and up to ``n`` validation images with their boxes (a note for any not drawn)."""
    from medsight.datasets.loading import read_case_image

    cases = [c["case"] for c in metrics.get("per_case", [])]
    if not cases:
        raise FigureSkipped("metrics.json lists no cases")
    data: DetectionData = load_detections(sources, cases)
    threshold, f1 = best_f1_threshold(data)
    counts = image_counts(data, threshold)
    picks = pick_images(counts, n)
    if not picks:
        raise FigureSkipped("no image has a reference box or a detection")
    parts = [f"<p>Predicted boxes scoring at least {threshold:.3f} (the threshold of the best F1 over all "
             f"validation images and classes, F1 {f1:.3f} at IoU 0.5); reference boxes in green.</p>"]
    for rank, i in picks:
        tp, fp, fn = counts[i]
        case_id = data.cases[i]
        title = f"{rank}: {case_id} ({tp} found, {fp} false positive(s), {fn} missed)"

        def draw(i: int = i, case_id: str = case_id, title: str = title) -> str:
            image = read_case_image(sources.case(case_id), sources.manifest).array
            boxes, scores, names = data.detections[i]
            keep = scores >= threshold
            return boxes_figure(image, data.truth[i], (boxes[keep], scores[keep], names[keep]), data.class_names, title)

        parts.append(guarded(title, draw))
    return "".join(parts)
