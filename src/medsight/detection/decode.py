"""From dense maps to candidates: local maxima of the centre heatmap, boxes from size and offset, per-class NMS.

A candidate at cell ``j`` of class ``k`` has score ``heatmap[k, j]``, centre ``(j + offset[:, j]) * stride``
and size ``exp(size[:, j]) * stride`` (input pixels, array axes); see :mod:`medsight.detection.targets`.
Local maxima are found with the max-pooling trick (a cell equal to the maximum of its 3x3(x3) window).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsight.evaluation.detection import box_iou

#: log-size limits at decoding (cells): keeps exp() finite on untrained networks
LOG_SIZE_RANGE = (-4.0, 12.0)


def local_maxima(heatmap: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Boolean mask of the cells of a (K, *grid) heatmap that equal the maximum of their neighbourhood."""
    pool = F.max_pool2d if heatmap.dim() == 3 else F.max_pool3d
    pooled = pool(heatmap[None], kernel, stride=1, padding=kernel // 2)[0]
    return heatmap == pooled


def decode_maps(heatmap: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, stride: Sequence[int],
                max_candidates: int = 300, score_threshold: float = 0.01, kernel: int = 3,
                keep_best: bool = False) -> dict[str, np.ndarray]:
    """Candidates of one image from its heatmap probabilities (K, *g), log sizes and offsets (nd, *g).

    Returns ``boxes`` (N, 2 nd: lo per axis then hi per axis, input pixels), ``scores`` (N,) and ``classes``
    (N,, indices 0..K-1), the ``max_candidates`` best peaks with a score >= ``score_threshold``, best
    first (ties by cell order). ``keep_best`` keeps the single best peak even when it is below the threshold.
    """
    nd = heatmap.dim() - 1
    heatmap = heatmap.float()
    peaks = torch.where(local_maxima(heatmap, kernel), heatmap, torch.zeros_like(heatmap)).reshape(-1)
    k = min(int(max_candidates), peaks.numel())
    scores, flat = torch.topk(peaks, k, sorted=True)
    keep = scores >= score_threshold
    if keep_best and k:
        keep[0] = True
    scores, flat = scores[keep], flat[keep]
    grid = heatmap.shape[1:]
    cells_per_class = int(np.prod(grid))
    classes = flat // cells_per_class
    cell_index = flat % cells_per_class
    cell = torch.stack(torch.unravel_index(cell_index, tuple(grid)), dim=1)  # (N, nd)
    stride_t = torch.as_tensor(list(stride), dtype=torch.float64, device=heatmap.device)
    off = offset.reshape(nd, -1)[:, cell_index].T.double()
    log_size = size.reshape(nd, -1)[:, cell_index].T.double().clamp(*LOG_SIZE_RANGE)
    centre = (cell.double() + off) * stride_t
    extent = torch.exp(log_size) * stride_t
    boxes = torch.cat([centre - extent / 2, centre + extent / 2], dim=1)
    return {"boxes": boxes.cpu().numpy(), "scores": scores.double().cpu().numpy(),
            "classes": classes.cpu().numpy().astype(np.int64)}


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best first (2D or 3D boxes)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    if order.size == 0:
        return order
    iou = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(order.size, bool)
    keep = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def nms_per_class(candidates: dict[str, np.ndarray], iou_threshold: float) -> dict[str, np.ndarray]:
    """NMS within each class; the result keeps every array of ``candidates`` and is sorted by score."""
    classes = candidates["classes"]
    kept = [idx[nms(candidates["boxes"][idx], candidates["scores"][idx], iou_threshold)]
            for idx in (np.flatnonzero(classes == c) for c in np.unique(classes))]
    keep = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    keep = keep[np.argsort(-candidates["scores"][keep], kind="stable")]
    return {k: v[keep] for k, v in candidates.items()}
