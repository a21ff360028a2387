"""Train EfficientNet-Lite0 on an in-memory image set: fine-tuning with gradual unfreezing, or from scratch.

One short run per fold and strategy of ``medsight compare``. The shared training loop keeps one optimiser
over one fixed set of parameters; gradual unfreezing (ULMFiT's recipe: the classifier first, then the
backbone opened from the top down, with a lower learning rate for the pretrained layers) needs the
trainable set to grow during training, so this small trainer does it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsight.nets.efficientnet import EfficientNetLite0, efficientnet_lite0, imagenet_normalize
from medsight.tasks.batch_augment import random_affine_batch
from medsight.training.optim import adamw

#: dihedral augmentation for images without a canonical orientation (dermoscopy, microscopy, fundus)
ORIENTATION_FREE = {"rotation": [-math.pi, math.pi], "scale": [0.85, 1.2], "translate": 0.05,
                    "mirror_axes": [0, 1], "brightness": [0.9, 1.1], "contrast": [0.85, 1.15]}


@dataclass
class FinetuneConfig:
    """One training run: initialisation, epochs, learning rates and the unfreezing schedule."""

    epochs: int
    init: str = "imagenet"  # "imagenet", "random", or the path of an encoder written by `medsight pretrain`
    lr: float = 1e-3  # classifier learning rate
    backbone_lr_factor: float = 0.1  # backbone learning rate = lr * factor (1.0: one rate for all)
    unfreeze_fraction: float = 0.3  # share of the epochs over which the backbone is opened, top block first
    batch_size: int = 32
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    augmentation: dict = field(default_factory=lambda: dict(ORIENTATION_FREE))
    ema: bool = True  # evaluate an exponential moving average of the weights (window about one epoch)
    seed: int = 0


def build_model(init: str, num_classes: int) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights, random weights, or a pretrained encoder file's weights."""
    if init == "imagenet":
        return efficientnet_lite0(num_classes=num_classes, pretrained=True)
    model = efficientnet_lite0(num_classes=num_classes, pretrained=False)
    if init != "random":
        from medsight.pretrain import load_encoder

        model.backbone.load_state_dict(load_encoder(Path(init)), strict=False)
    return model


def trainable_units(epoch: float, total_epochs: int, n_units: int, unfreeze_fraction: float) -> int:
    """Backbone units trained at ``epoch``: none at first, all once ``unfreeze_fraction`` of training is done."""
    if unfreeze_fraction <= 0:
        return n_units
    opening = max(1.0, unfreeze_fraction * total_epochs)
    return int(min(n_units, math.floor(n_units * epoch / opening)))


def as_network_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> ImageNet-normalised float, channels-last (EfficientNet is faster so on a CPU)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return imagenet_normalize(x).contiguous(memory_format=torch.channels_last)


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, config: FinetuneConfig,
                     device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """Train on ``images`` (N, 3, H, W) uint8 with ``labels``; return the model and a log (losses, seconds).

    With ``config.ema`` the returned model is the moving average of the weights (and batch-norm
    statistics) over roughly the last epoch: on a few hundred images single steps move the network
    noticeably, and the average is a steadier end point than the last step.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(config.seed)
    model = build_model(config.init, num_classes).to(device).to(memory_format=torch.channels_last)
    units = model.backbone_units()
    head_params = model.head_parameters()
    backbone_params = model.backbone_parameters()
    optimizer = adamw([
        {"params": backbone_params, "lr": config.lr * config.backbone_lr_factor},
        {"params": head_params, "lr": config.lr}], weight_decay=config.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    n = len(images)
    steps_per_epoch = max(1, n // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    rng = np.random.default_rng(config.seed)
    log = {"loss": [], "trainable_units": []}
    average = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        decay = 1.0 - 1.0 / max(2, steps_per_epoch)
        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    from medsight.progress import progress

    start, step = time.perf_counter(), 0
    start_from = config.init if config.init in ("imagenet", "random") else "own encoder"
    for epoch in progress(range(config.epochs), desc=f"training ({start_from})", unit="epoch", leave=False):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            opened = trainable_units(epoch + s / steps_per_epoch, config.epochs, len(units), config.unfreeze_fraction)
            if opened != getattr(model, "_opened", None):
                model.freeze_backbone(opened)
                model._opened = opened
            model.train()
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            x = as_network_input(images[idx])
            x = random_affine_batch(x, [np.random.default_rng([config.seed, epoch, s, j]) for j in range(len(idx))],
                                    config.augmentation).contiguous(memory_format=torch.channels_last)
            factor = 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps)))
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.to(device)), torch.from_numpy(labels[idx]).to(device))
            loss.backward()
            optimizer.step()
            step += 1
            log["loss"].append(float(loss.detach()))
            if average is not None:
                average.update_parameters(model)
        log["trainable_units"].append(model._opened)
    log["seconds"] = time.perf_counter() - start
    if average is not None:
        return average.module, log
    return model, log


def dihedral_variants(x: torch.Tensor, orientation_free: bool) -> list[torch.Tensor]:
    """Test-time views: the 8 rotations/flips of the square, or the image and its left-right mirror."""
    if not orientation_free:
        return [x, torch.flip(x, [3])]
    views = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        views += [r, torch.flip(r, [3])]
    return views


@torch.inference_mode()
def predict_probabilities(model: nn.Module, images: np.ndarray, orientation_free: bool = True, batch: int = 32,
                          device: torch.device | None = None) -> np.ndarray:
    """Softmax probabilities (N, K) averaged over the test-time views."""
    device = device or torch.device("cpu")
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = as_network_input(images[i:i + batch]).to(device)
        views = dihedral_variants(x, orientation_free)
        p = torch.stack([torch.softmax(model(v.contiguous(memory_format=torch.channels_last)), 1) for v in views])
        out.append(p.mean(0).cpu().numpy())
    return np.concatenate(out)
