"""Segmentation and dense-detection losses: Dice, cross-entropy, focal, Tversky, sensitivity-specificity.

Shapes. ``logits`` are ``(B, K, *spatial)``. A target is one of:
- an integer label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` with values in ``0..K-1`` (softmax mode);
- a float one-hot / multi-hot map ``(B, K, *spatial)`` (soft labels in softmax mode; regions in sigmoid
  mode, where every channel is an independent foreground region, as nnU-Net's region-based training).

Probabilities are ``softmax`` over channels, or ``sigmoid`` per channel when ``sigmoid=True``. In softmax
mode channel 0 is the background and ``include_background=False`` leaves it out of the overlap losses;
in sigmoid mode every channel is a foreground region and is always included. Losses are computed in
float32 whatever the input precision (mixed-precision training stays stable).

>>> logits = torch.zeros(1, 2, 2, 2)
>>> labels = torch.tensor([[[0, 1], [1, 0]]])
>>> round(float(build_loss("dice_ce")(logits, labels)), 4)  # CE = ln 2, Dice = 1 - 2*1/(2+2)
1.1931
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsight.errors import InputError

__all__ = [
    "CenterNetFocalLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "FocalLoss",
    "SensitivitySpecificityLoss",
    "SoftDiceLoss",
    "TverskyLoss",
    "build_loss",
    "list_losses",
    "target_label_map",
    "target_one_hot",
]


# -- targets -------------------------------------------------------------------------------------
def target_label_map(logits: Tensor, target: Tensor) -> Tensor | None:
    """The target as a long label map ``(B, *spatial)``, or None when it is a one-hot/multi-hot map."""
    if target.ndim == logits.ndim - 1:
        labels = target
    elif target.ndim == logits.ndim and target.shape[1] == 1 and logits.shape[1] > 1:
        labels = target[:, 0]
    else:
        return None
    if labels.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"label map of shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}")
    return labels.long()


def target_one_hot(logits: Tensor, target: Tensor, sigmoid: bool = False) -> Tensor:
    """The target as a float map ``(B, K, *spatial)`` matching ``logits`` (one-hot for label maps)."""
    num_channels = logits.shape[1]
    if sigmoid and num_channels == 1 and target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)  # a binary mask without its channel axis
    labels = None if (sigmoid and num_channels == 1) else target_label_map(logits, target)
    if labels is not None:
        if sigmoid:
            raise ValueError(
                f"sigmoid mode needs a multi-hot target with {num_channels} channels, got a label map "
                f"{tuple(target.shape)} (convert labels to regions first)"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_channels):
            raise ValueError(
                f"label values {int(labels.min())}..{int(labels.max())} outside 0..{num_channels - 1}"
            )
        return F.one_hot(labels, num_channels).movedim(-1, 1).float()
    if target.shape != logits.shape:
        raise ValueError(f"target of shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}")
    return target.float()


def _probabilities(logits: Tensor, sigmoid: bool) -> Tensor:
    return torch.sigmoid(logits.float()) if sigmoid else torch.softmax(logits.float(), dim=1)


def _foreground(tensor: Tensor, sigmoid: bool, include_background: bool) -> Tensor:
    """Drop channel 0 (the background) in softmax mode unless it is asked for."""
    if sigmoid or include_background or tensor.shape[1] == 1:
        return tensor
    return tensor[:, 1:]


def _sum_axes(ndim: int, over_batch: bool) -> list[int]:
    """Spatial axes, plus the batch axis when statistics pool the whole batch (nnU-Net's batch dice)."""
    return ([0] if over_batch else []) + list(range(2, ndim))


def _overlap(logits: Tensor, target: Tensor, sigmoid: bool, include_background: bool, batch: bool):
    """True positives, false positives and false negatives (soft), per class (and sample)."""
    probs = _foreground(_probabilities(logits, sigmoid), sigmoid, include_background)
    truth = _foreground(target_one_hot(logits, target, sigmoid), sigmoid, include_background)
    axes = _sum_axes(probs.ndim, batch)
    tp = (probs * truth).sum(axes)
    fp = probs.sum(axes) - tp
    fn = truth.sum(axes) - tp
    return tp, fp, fn


# -- overlap losses ------------------------------------------------------------------------------
class SoftDiceLoss(nn.Module):
    """1 - mean soft Dice, ``(2 TP + smooth) / (2 TP + FP + FN + smooth)`` per class (nnU-Net's form).

    ``batch_dice`` pools the statistics over the batch (one Dice per class), otherwise one Dice per
    sample and class; the result is their mean. A perfect prediction gives ~0.
    """

    def __init__(self, batch_dice: bool = False, include_background: bool = False, smooth: float = 1e-5,
                 sigmoid: bool = False):
        super().__init__()
        self.batch_dice, self.include_background = batch_dice, include_background
        self.smooth, self.sigmoid = smooth, sigmoid

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        tp, fp, fn = _overlap(logits, target, self.sigmoid, self.include_background, self.batch_dice)
        dice = (2 * tp + self.smooth) / (2 * tp + fp + fn + self.smooth).clamp_min(1e-8)
        return 1 - dice.mean()


class TverskyLoss(nn.Module):
    """1 - mean Tversky index ``(TP + s) / (TP + alpha FP + beta FN + s)`` (Salehi et al. 2017).

    ``beta > alpha`` weighs misses more than false alarms, trading precision for recall.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, batch_dice: bool = False,
                 include_background: bool = False, smooth: float = 1e-5, sigmoid: bool = False):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.batch_dice, self.include_background = batch_dice, include_background
        self.smooth, self.sigmoid = smooth, sigmoid

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        tp, fp, fn = _overlap(logits, target, self.sigmoid, self.include_background, self.batch_dice)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth).clamp_min(1e-8)
        return 1 - index.mean()


class SensitivitySpecificityLoss(nn.Module):
    """Brosch et al. 2016: ``r * SE_pos / n_pos + (1 - r) * SE_neg / n_neg``, mean over foreground classes.

    SE_pos is the squared error ``(y - p)^2`` summed over the voxels of the class, SE_neg over the other
    voxels; ``batch=True`` pools the sums over the whole batch (as the paper), else per sample.
    """

    def __init__(self, r: float = 0.05, eps: float = 1e-5, batch: bool = True, include_background: bool = False,
                 sigmoid: bool = False):
        super().__init__()
        self.r, self.eps, self.batch = r, eps, batch
        self.include_background, self.sigmoid = include_background, sigmoid

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        probs = _foreground(_probabilities(logits, self.sigmoid), self.sigmoid, self.include_background)
        truth = _foreground(target_one_hot(logits, target, self.sigmoid), self.sigmoid, self.include_background)
        axes = _sum_axes(probs.ndim, self.batch)
        squared_error = (truth - probs) ** 2
        sensitivity = (squared_error * truth).sum(axes) / (truth.sum(axes) + self.eps)
        specificity = (squared_error * (1 - truth)).sum(axes) / ((1 - truth).sum(axes) + self.eps)
        return (self.r * sensitivity + (1 - self.r) * specificity).mean()


# -- voxel-wise losses ---------------------------------------------------------------------------
class CrossEntropyLoss(nn.Module):
    """Cross-entropy on logits: softmax CE (label maps or soft one-hot), or BCE-with-logits in sigmoid mode.

    ``weight``: per-class weights (softmax) or per-channel positive weights (sigmoid). Also serves
    classification: logits ``(B, K)`` with class indices ``(B,)``.
    """

    def __init__(self, sigmoid: bool = False, weight: Sequence[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.sigmoid, self.label_smoothing = sigmoid, label_smoothing
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The mean loss over voxels (and channels in sigmoid mode), a scalar."""
        logits = logits.float()
        if self.sigmoid:
            truth = target_one_hot(logits, target, sigmoid=True)
            pos_weight = None if self.weight is None else self.weight.view(-1, *[1] * (logits.ndim - 2))
            return F.binary_cross_entropy_with_logits(logits, truth, pos_weight=pos_weight)
        labels = target_label_map(logits, target)
        truth = labels if labels is not None else target_one_hot(logits, target)
        return F.cross_entropy(logits, truth, weight=self.weight, label_smoothing=self.label_smoothing)


def _class_alpha(alpha: float | Sequence[float] | None, num_channels: int, sigmoid: bool) -> Tensor | None:
    """Per-channel alpha: a float is the foreground weight (background 1 - alpha in softmax mode)."""
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        values = [float(alpha)] * num_channels
        if not sigmoid:
            values[0] = 1.0 - float(alpha)
        return torch.tensor(values)
    values = torch.as_tensor(alpha, dtype=torch.float32).flatten()
    if values.numel() != num_channels:
        raise ValueError(f"focal alpha has {values.numel()} values for {num_channels} channels")
    return values


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017), mean over voxels: ``-alpha_t (1 - p_t)^gamma log p_t``.

    Softmax mode: summed over classes with the target's (one-hot) weights; ``alpha`` is a per-class
    weight sequence, or a float giving foreground ``alpha`` and background ``1 - alpha``. Sigmoid mode:
    per channel and voxel, ``alpha_t = alpha`` for positives and ``1 - alpha`` for negatives.
    ``alpha=None`` weighs everything 1; ``gamma=0`` and no alpha gives plain cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | Sequence[float] | None = None, sigmoid: bool = False):
        super().__init__()
        self.gamma, self.alpha, self.sigmoid = gamma, alpha, sigmoid

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        logits = logits.float()
        truth = target_one_hot(logits, target, self.sigmoid)
        alpha = _class_alpha(self.alpha, logits.shape[1], self.sigmoid)
        shape = (1, -1) + (1,) * (logits.ndim - 2)
        if self.sigmoid:
            p = torch.sigmoid(logits)
            pos = truth * (1 - p) ** self.gamma * F.logsigmoid(logits)
            neg = (1 - truth) * p**self.gamma * F.logsigmoid(-logits)
            if alpha is not None:
                a = alpha.to(logits.device).view(shape)
                pos, neg = a * pos, (1 - a) * neg
            return -(pos + neg).mean()
        log_p = F.log_softmax(logits, dim=1)
        per_class = truth * (1 - log_p.exp()) ** self.gamma * log_p
        if alpha is not None:
            per_class = per_class * alpha.to(logits.device).view(shape)
        return -per_class.sum(1).mean()


class CenterNetFocalLoss(nn.Module):
    """CenterNet's focal loss for centre heatmaps (Law & Deng 2018; Zhou et al. 2019).

    ``logits`` and ``heatmap`` are ``(B, C, *spatial)``; the heatmap holds 1 at object centres and a
    Gaussian bump around them. Positives (heatmap == 1) cost ``-(1 - p)^alpha log p``, negatives
    ``-(1 - y)^beta p^alpha log(1 - p)`` (penalty reduced near centres); the sum is divided by the
    number of positives (at least 1).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0):
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: Tensor, heatmap: Tensor) -> Tensor:
        """The loss, a scalar."""
        if heatmap.shape != logits.shape:
            raise ValueError(f"heatmap {tuple(heatmap.shape)} does not fit logits {tuple(logits.shape)}")
        logits, heatmap = logits.float(), heatmap.float()
        p = torch.sigmoid(logits)
        positive = heatmap.eq(1).float()
        pos = positive * (1 - p) ** self.alpha * F.logsigmoid(logits)
        neg = (1 - positive) * (1 - heatmap) ** self.beta * p**self.alpha * F.logsigmoid(-logits)
        return -(pos.sum() + neg.sum()) / positive.sum().clamp_min(1.0)


# -- sums ----------------------------------------------------------------------------------------
class DiceCELoss(nn.Module):
    """``weight_dice * SoftDice + weight_ce * CE``: nnU-Net's default segmentation loss."""

    def __init__(self, weight_dice: float = 1.0, weight_ce: float = 1.0, batch_dice: bool = False,
                 include_background: bool = False, smooth: float = 1e-5, sigmoid: bool = False):
        super().__init__()
        self.weight_dice, self.weight_ce = weight_dice, weight_ce
        self.dice = SoftDiceLoss(batch_dice, include_background, smooth, sigmoid)
        self.ce = CrossEntropyLoss(sigmoid=sigmoid)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        return self.weight_dice * self.dice(logits, target) + self.weight_ce * self.ce(logits, target)


class DiceFocalLoss(nn.Module):
    """``weight_dice * SoftDice + weight_focal * Focal``."""

    def __init__(self, weight_dice: float = 1.0, weight_focal: float = 1.0, gamma: float = 2.0,
                 alpha: float | Sequence[float] | None = None, batch_dice: bool = False,
                 include_background: bool = False, smooth: float = 1e-5, sigmoid: bool = False):
        super().__init__()
        self.weight_dice, self.weight_focal = weight_dice, weight_focal
        self.dice = SoftDiceLoss(batch_dice, include_background, smooth, sigmoid)
        self.focal = FocalLoss(gamma, alpha, sigmoid)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss, a scalar."""
        return self.weight_dice * self.dice(logits, target) + self.weight_focal * self.focal(logits, target)


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net's weights ``1 / 2^i``, normalised to sum 1 (full resolution first)."""
    raw = [0.5**i for i in range(num_outputs)]
    return [w / sum(raw) for w in raw]


def downsample_target(target: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """The target resized to ``spatial_shape`` by nearest neighbour, keeping its dtype and layout."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    no_channel = target.ndim == len(spatial_shape) + 1
    t = target.unsqueeze(1) if no_channel else target
    if tuple(t.shape[2:]) == spatial_shape:
        return target
    resized = F.interpolate(t.float(), size=spatial_shape, mode="nearest").to(target.dtype)
    return resized[:, 0] if no_channel else resized


class DeepSupervisionLoss(nn.Module):
    """A loss summed over deep-supervision outputs (full resolution first) with the target resized to each.

    Default weights are nnU-Net's ``1 / 2^i`` normalised. nnU-Net also computes the lowest decoder level and
    gives it weight 0; :class:`medsight.nets.UNet` does not output that level, so the weights here cover
    exactly the outputs given. A single tensor (eval mode) gets the plain loss.
    """

    def __init__(self, loss: nn.Module | Callable[[Tensor, Tensor], Tensor], weights: Sequence[float] | None = None):
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        """The weighted sum of the loss at each output's resolution."""
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target)
        weights = self.weights if self.weights is not None else deep_supervision_weights(len(outputs))
        if len(weights) < len(outputs):
            raise ValueError(f"{len(outputs)} deep-supervision outputs but only {len(weights)} weights")
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for output, weight in zip(outputs, weights):
            if weight:
                total = total + weight * self.loss(output, downsample_target(target, output.shape[2:]))
        return total


# -- registry ------------------------------------------------------------------------------------
_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "dice": SoftDiceLoss,
    "ce": CrossEntropyLoss,
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "dice_focal": DiceFocalLoss,
    "tversky": TverskyLoss,
    "ss": SensitivitySpecificityLoss,
    "centernet_focal": CenterNetFocalLoss,
}


def list_losses() -> list[str]:
    """Names that :func:`build_loss` accepts."""
    return sorted(_LOSSES)


def build_loss(name: str, **kwargs) -> nn.Module:
    """The loss registered under ``name`` ("dice", "ce", "dice_ce", "focal", "tversky", "ss", ...)."""
    try:
        factory = _LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}", fix=f"use one of {', '.join(list_losses())}") from None
    return factory(**kwargs)
