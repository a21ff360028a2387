"""The detections and reference boxes behind a detection metrics.json, and operating points drawn from them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsight.reporting.safe import FigureSkipped
from medsight.reporting.sources import Sources


@dataclass
class DetectionData:
    """Per image (in ``cases`` order): detections ``(boxes, scores, class names)`` and truth ``(boxes, names)``."""

    cases: list[str]
    detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    truth: list[tuple[np.ndarray, np.ndarray]]
    class_names: list[str]
    nd: int


def load_detections(sources: Sources, case_ids: list[str]) -> DetectionData:
    """``detections.csv`` of the predictions folder and the manifest's boxes for ``case_ids``."""
    from medsight.tasks.detection import read_detections

    path = sources.predictions_dir() / "detections.csv"
    if not path.is_file():
        raise FigureSkipped(f"no detections.csv in {path.parent}")
    if sources.manifest is None:
        raise FigureSkipped("the reference dataset (manifest.json) was not found")
    manifest = sources.manifest
    nd = int(manifest.dims)
    rows = read_detections(path, nd)
    names = [manifest.labels[str(v)] for v in manifest.label_values if v != 0]
    by_case: dict[str, list[dict]] = {c: [] for c in case_ids}
    for r in rows:
        if r["case"] in by_case:
            by_case[r["case"]].append(r)
    dets, truth = [], []
    for c in case_ids:
        d = by_case[c]
        dets.append((np.array([r["box"] for r in d], float).reshape(-1, 2 * nd), np.array([r["score"] for r in d], float),
                     np.array([r["label"] for r in d], dtype=object)))
        boxes = sources.case(c).boxes
        truth.append((np.array([b["box"] for b in boxes], float).reshape(-1, 2 * nd),
                      np.array([manifest.labels[str(int(b["label"]))] for b in boxes], dtype=object)))
    return DetectionData(list(case_ids), dets, truth, names, nd)


def _matches(data: DetectionData, iou: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per image, class-aware greedy matching at ``iou``: (scores, hit flags, class names, gt count)."""
    from medsight.evaluation.detection import match_images, split_by_class

    dets, gts = split_by_class(data.detections, data.truth, data.class_names)
    out = []
    for i in range(len(data.cases)):
        scores, hits, labels, n_gt = [], [], [], 0
        for name in data.class_names:
            m = match_images([dets[name][i]], [gts[name][i]], [iou])[0]
            scores.append(m.scores)
            hits.append(m.outcome[:, 0] == 1)
            labels.append(np.full(m.scores.size, name, dtype=object))
            n_gt += m.n_gt
        out.append((np.concatenate(scores), np.concatenate(hits), np.concatenate(labels), n_gt))
    return out


def best_f1_threshold(data: DetectionData, iou: float = 0.5) -> tuple[float, float]:
    """(score threshold, F1) of the operating point with the best F1 over all images and classes."""
    matched = _matches(data, iou)
    scores = np.concatenate([m[0] for m in matched])
    hits = np.concatenate([m[1] for m in matched])
    n_gt = sum(m[3] for m in matched)
    if scores.size == 0 or n_gt == 0:
        return 0.5, 0.0
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # operating points: tied scores together
    f1 = 2 * tp[ends] / (2 * tp[ends] + fp[ends] + (n_gt - tp[ends]))
    best = int(np.argmax(f1))
    return float(scores[ends[best]]), float(f1[best])


def image_counts(data: DetectionData, threshold: float, iou: float = 0.5) -> list[tuple[int, int, int]]:
    """Per image (true positives, false positives, missed boxes) of the detections scoring >= ``threshold``."""
    out = []
    for i, (boxes, scores, labels) in enumerate(data.detections):
        keep = scores >= threshold
        sub = DetectionData([data.cases[i]], [(boxes[keep], scores[keep], labels[keep])], [data.truth[i]],
                            data.class_names, data.nd)
        _, hits, _, n_gt = _matches(sub, iou)[0]
        tp = int(hits.sum())
        out.append((tp, int(hits.size - tp), int(n_gt - tp)))
    return out
