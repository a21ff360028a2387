"""The dense detector's loss: CenterNet focal loss on the centre heatmaps plus weighted L1 on size and offset.

``output`` is the network's ``(B, K + 2 nd, *grid)``; ``target`` a dict of batched tensors from
:func:`medsight.detection.targets.render_targets` (``heatmap``, ``size``, ``offset``, ``weight``). The
focal term equals :class:`medsight.losses.CenterNetFocalLoss` (normalised by the batch's positives); the
regression terms are summed over cells with the per-object weights and divided by the number of objects.
The loss also writes each image's own loss into ``target["image_losses"]`` (detached, on the CPU), which
the selective sampler reads to draw hard images more often.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TARGET_KEYS = ("heatmap", "size", "offset", "weight")


class CenterNetLoss(nn.Module):
    """``focal(heatmap) + size_weight * L1(log size) + offset_weight * L1(offset)``."""

    def __init__(self, num_classes: int, spatial_dims: int, size_weight: float = 1.0, offset_weight: float = 1.0,
                 alpha: float = 2.0, beta: float = 4.0):
        super().__init__()
        self.num_classes, self.spatial_dims = int(num_classes), int(spatial_dims)
        self.size_weight, self.offset_weight = float(size_weight), float(offset_weight)
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, output: Tensor, target: dict) -> Tensor:
        """The batch loss, a scalar (per-image losses go to ``target["image_losses"]``)."""
        k, nd = self.num_classes, self.spatial_dims
        if output.shape[1] != k + 2 * nd:
            raise ValueError(f"output has {output.shape[1]} channels, expected {k} + 2 x {nd}")
        t = {name: target[name].to(output.device, non_blocking=True).float() for name in TARGET_KEYS}
        output = output.float()
        logits, log_size, offset = output[:, :k], output[:, k:k + nd], output[:, k + nd:]
        batch_axes = tuple(range(1, output.dim()))
        positive = t["heatmap"].eq(1).float()
        pos = positive * (1 - torch.sigmoid(logits)) ** self.alpha * F.logsigmoid(logits)
        neg = (1 - positive) * (1 - t["heatmap"]) ** self.beta * torch.sigmoid(logits) ** self.alpha \
            * F.logsigmoid(-logits)
        focal_sum = -(pos + neg).sum(batch_axes)  # per image
        n_pos = positive.sum(batch_axes)
        w = t["weight"]
        size_sum = (w * (log_size - t["size"]).abs()).sum(batch_axes)
        offset_sum = (w * (offset - t["offset"]).abs()).sum(batch_axes)
        n_obj = w.sum(batch_axes)  # each object's weights sum to 1
        regression = self.size_weight * size_sum + self.offset_weight * offset_sum
        loss = focal_sum.sum() / n_pos.sum().clamp_min(1.0) + regression.sum() / n_obj.sum().clamp_min(1.0)
        with torch.no_grad():
            target["image_losses"] = (focal_sum / n_pos.clamp_min(1.0) + regression / n_obj.clamp_min(1.0)).cpu()
        return loss
