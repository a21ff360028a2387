"""Dense detection helpers: target rendering, decoding into candidates, NMS, box-aware sampling, loss.

The detection Task (:mod:`medsight.tasks.detection`) assembles these; each works on its own:

>>> import numpy as np, torch
>>> t = render_targets(np.array([[8., 8.]]), np.array([[24., 40.]]), np.array([0]), (16, 16), (4, 4), 1)
>>> c = decode_maps(torch.from_numpy(t["heatmap"]), torch.from_numpy(t["size"]),
...                 torch.from_numpy(t["offset"]), (4, 4), max_candidates=1)
>>> c["boxes"].round(6).tolist()
[[8.0, 8.0, 24.0, 40.0]]
"""
from __future__ import annotations

from medsight.detection.augment import colour_jitter, sample_patch
from medsight.detection.decode import decode_maps, local_maxima, nms, nms_per_class
from medsight.detection.loss import CenterNetLoss
from medsight.detection.targets import grid_shape, render_targets

__all__ = ["CenterNetLoss", "colour_jitter", "decode_maps", "grid_shape", "local_maxima", "nms", "nms_per_class",
           "render_targets", "sample_patch"]
