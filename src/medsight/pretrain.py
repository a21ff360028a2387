"""Self-supervised pretraining (SimCLR) of the EfficientNet-Lite0 encoder on unlabelled 2D images.

``medsight pretrain IMAGES_DIR -o ENCODER`` reads every image under IMAGES_DIR (grey or RGB, any size),
makes two random views of each (zoom, rotation, flips, brightness and contrast), and trains the encoder
so that the two views of one image are nearer to each other than to every other view of the batch
(NT-Xent loss, Chen et al. 2020) through a small projection head that is thrown away afterwards.
Starting from the ImageNet weights (``init="imagenet"``, the default) this adapts natural-image features
to the domain (Azizi et al. 2021 found ImageNet -> in-domain SimCLR better than either alone); from
``init="random"`` it is plain SimCLR, which needs far more images and time than a CPU has.

The encoder is written as safetensors (the backbone's weights; no code is unpickled on loading) with a
JSON sidecar (``ENCODER.json``) saying how it was made; ``medsight compare --encoder ENCODER`` and
:func:`medsight.classification.finetune.build_model` load it.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.errors import InputError, positive
from medsight.locks import one_writer
from medsight.tempfiles import replaced_on_success
from medsight.training.optim import adamw

ENCODER_FORMAT = "medsight-encoder-v1"
ARCHITECTURE = "efficientnet_lite0"
#: NT-Xent needs other images in the batch to contrast each view with
MIN_IMAGES = 4
#: the two views' augmentation: stronger than supervised training's, as contrastive learning needs
VIEW_AUGMENTATION = {"rotation": [-math.pi, math.pi], "scale": [0.6, 1.1], "translate": 0.1, "mirror_axes": [0, 1],
                     "brightness": [0.7, 1.3], "contrast": [0.6, 1.4]}


def find_images(images_dir: str | Path) -> list[Path]:
    """Every 2D image file under ``images_dir`` (sub-folders included), sorted."""
    from medsight.datasets.importers.common import is_image_file

    folder = Path(images_dir)
    if not folder.is_dir():
        raise InputError("no such folder of images", path=folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                   and not p.name.lower().endswith((".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")))
    if not files:
        raise InputError("the folder holds no 2D image files (png, jpg, tif, bmp, gif)", path=folder)
    return files


def load_images(files: list[Path], side: int) -> np.ndarray:
    """Images as (N, 3, side, side) uint8 (grey replicated to RGB)."""
    from medsight.classification.images import resize_square, to_rgb_uint8
    from medsight.io import read_image

    return np.stack([resize_square(to_rgb_uint8(read_image(f).array, str(f)), side) for f in files])


class ProjectionHead(nn.Sequential):
    """SimCLR's MLP on top of the pooled encoder features."""

    def __init__(self, in_features: int = 1280, hidden: int = 512, out_features: int = 128):
        super().__init__(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_features))


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent: cross-entropy of each view picking its partner among the other 2B - 1 views (cosine / T)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    similarity = z @ z.t() / temperature
    similarity.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, partner)


def _views(images: np.ndarray, seeds: list, augmentation: dict) -> torch.Tensor:
    from medsight.classification.finetune import as_network_input
    from medsight.tasks.batch_augment import random_affine_batch

    x = as_network_input(images)
    return random_affine_batch(x, [np.random.default_rng(s) for s in seeds], augmentation).contiguous(
        memory_format=torch.channels_last)


def simclr_pretrain(images: np.ndarray, epochs: int | None = None, budget_minutes: float | None = None,
                    init: str = "imagenet", batch_size: int = 32, lr: float | None = None, temperature: float = 0.2,
                    seed: int = 0, quiet: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
                    checkpoint_every_seconds: float = 60.0) -> tuple[nn.Module, dict]:
    """SimCLR on uint8 ``images`` (N, 3, H, W); returns the EfficientNet-Lite0 backbone and a log.

    Give ``epochs``, or ``budget_minutes`` (the first steps are timed and the epochs set to fit). With
    ``checkpoint``, the state at the end of an epoch is saved there (at most every
    ``checkpoint_every_seconds``), and ``resume`` continues from it: on a CPU exactly as if uninterrupted.
    """
    from medsight.nets.efficientnet import efficientnet_lite0

    if len(images) < MIN_IMAGES:
        raise InputError(f"contrastive pretraining needs at least {MIN_IMAGES} images, got {len(images)}")
    torch.manual_seed(seed)
    net = efficientnet_lite0(num_classes=2, pretrained=init == "imagenet").to(memory_format=torch.channels_last)
    head = ProjectionHead(net.feature_dim)
    lr = lr if lr is not None else (1e-4 if init == "imagenet" else 1e-3)
    optimizer = adamw([*net.backbone_parameters(), *head.parameters()], lr=lr, weight_decay=1e-4)
    batch_size = min(batch_size, len(images))
    steps_per_epoch = max(1, len(images) // batch_size)
    rng = np.random.default_rng(seed)
    log: dict = {"loss": [], "epochs": 0}
    start = time.perf_counter()
    total_epochs = epochs
    epoch = 0
    request = _request_digest(images, epochs, budget_minutes, init, batch_size, lr, temperature, seed)
    state = _resume_state(checkpoint, request) if resume else None
    if state is not None:
        net.load_state_dict(state["net"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        epoch, total_epochs, log = int(state["epoch"]), int(state["total_epochs"]), json.loads(state["log"])
        start -= float(state["seconds"])
        if not quiet:
            print(f"pretrain: resumed after epoch {epoch} of {total_epochs}", flush=True)
    last_save = time.perf_counter()
    while total_epochs is None or epoch < total_epochs:
        order = rng.permutation(len(images))
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            seeds = [[seed, epoch, s, j] for j in range(len(idx))]
            v1 = _views(images[idx], [[*q, 1] for q in seeds], VIEW_AUGMENTATION)
            v2 = _views(images[idx], [[*q, 2] for q in seeds], VIEW_AUGMENTATION)
            if total_epochs is not None:
                progress = (epoch * steps_per_epoch + s) / (total_epochs * steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress))
            net.train()
            head.train()
            loss = nt_xent_loss(head(net.features(v1)), head(net.features(v2)), temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log["loss"].append(round(float(loss.detach()), 5))
            if total_epochs is None and s == min(2, steps_per_epoch - 1):  # time the first steps, fix the epochs
                per_step = (time.perf_counter() - start) / (s + 1)
                total_epochs = max(1, int(budget_minutes * 60 / (per_step * steps_per_epoch))) if budget_minutes else 1
        epoch += 1
        log["epochs"] = epoch
        if not quiet:
            print(f"pretrain epoch {epoch}/{total_epochs}: NT-Xent {np.mean(log['loss'][-steps_per_epoch:]):.4f}",
                  flush=True)
        if checkpoint is not None and epoch < total_epochs and time.perf_counter() - last_save >= checkpoint_every_seconds:
            from medsight.training.checkpoint import save_checkpoint

            save_checkpoint(checkpoint, {"net": net.state_dict(), "head": head.state_dict(),
                                         "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                                         "numpy_rng": json.dumps(rng.bit_generator.state), "epoch": epoch,
                                         "total_epochs": total_epochs, "log": json.dumps(log),
                                         "seconds": time.perf_counter() - start}, request)
            last_save = time.perf_counter()
    log["seconds"] = round(time.perf_counter() - start, 1)
    return net.backbone, log


def _request_digest(images: np.ndarray, *settings) -> str:
    """What a pretraining checkpoint belongs to: the images' pixels and the settings that shape training."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(json.dumps([list(images.shape), *settings]).encode())
    return h.hexdigest()


def _resume_state(checkpoint: str | Path | None, request: str) -> dict | None:
    """The saved state to continue from, None when there is none (a run killed before its first checkpoint
    kept nothing: it starts again, as ``medsight train --resume`` does); refuses one of other images or settings."""
    from medsight.training.checkpoint import load_checkpoint

    if checkpoint is None or not Path(checkpoint).is_file():
        logging.getLogger("medsight.pretrain").warning(f"{checkpoint}: no checkpoint to resume from: pretraining "
                                                       "from the start")
        return None
    state = load_checkpoint(checkpoint)
    if state.get("plan_hash") != request:
        raise InputError("the unfinished pretraining was started on other images or settings", path=checkpoint,
                         fix="give the same folder and options, or delete the checkpoint to start again")
    return state


def checkpoint_path(output: str | Path) -> Path:
    """Where ``medsight pretrain -o OUTPUT`` keeps its unfinished state: ``OUTPUT.checkpoint.pt``."""
    output = Path(output)
    return output.with_name(output.name + ".checkpoint.pt")


def save_encoder(backbone: nn.Module, path: str | Path, info: dict) -> Path:
    """Write the backbone's weights (safetensors) and ``<path>.json`` describing them, atomically."""
    from safetensors.torch import save_file

    from medsight.datasets.manifest import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items() if not k.startswith("_fc")}
    with replaced_on_success(path) as tmp:
        save_file(state, str(tmp), metadata={"format": ENCODER_FORMAT, "architecture": ARCHITECTURE})
    atomic_write_text(path.with_name(path.name + ".json"),
                      json.dumps({"format": ENCODER_FORMAT, "architecture": ARCHITECTURE, **info}, indent=1))
    return path


def load_encoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone weights of an encoder file; refuses files that are not medsight encoders."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError("no such encoder file", path=path, fix="write one with `medsight pretrain IMAGES_DIR -o FILE`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"is not a readable encoder file ({e})", path=path) from None
    if meta.get("format") != ENCODER_FORMAT or meta.get("architecture") != ARCHITECTURE:
        raise InputError(f"is not a medsight {ARCHITECTURE} encoder (metadata {meta})", path=path)
    return state


def pretrain(images_dir: str | Path, output: str | Path, epochs: int | None = None, budget_minutes: float = 10.0,
             side: int = 128, init: str = "imagenet", batch_size: int = 32, seed: int = 0,
             quiet: bool = False, resume: bool = False, checkpoint_every_seconds: float = 60.0) -> Path:
    """Self-supervised SimCLR pretraining on every image under IMAGES_DIR; writes the encoder to OUTPUT.

    Until it finishes, its state is kept in ``OUTPUT.checkpoint.pt`` (:func:`checkpoint_path`); ``resume``
    continues from there, and a new run refuses to start over it. The checkpoint goes when the encoder is written.

    Example:
        >>> pretrain("../shared/data/isic_uda1", "work/isic_encoder.safetensors", budget_minutes=10)  # doctest: +SKIP
    """
    if init not in ("imagenet", "random"):
        raise InputError(f"unknown initialisation {init!r}", fix="use imagenet or random")
    positive(side, "side", integer=True, minimum=1)
    positive(epochs, "epochs", integer=True, minimum=1)
    positive(budget_minutes, "budget_minutes")
    positive(batch_size, "batch_size", integer=True, minimum=2)  # NT-Xent contrasts the views of a batch
    if Path(output).is_dir():
        raise InputError("is a folder, not a file", path=output,
                         fix="give the encoder file to write, e.g. -o encoder.safetensors")
    output = Path(output)
    with one_writer(output.parent, f"the encoder {output.name}", name=f".{output.name}.lock",
                    fix="wait for it to finish, or pretrain into another file with -o"):
        return _pretrain(images_dir, output, epochs, budget_minutes, side, init, batch_size, seed, quiet, resume,
                         checkpoint_every_seconds)


def _pretrain(images_dir: str | Path, output: Path, epochs: int | None, budget_minutes: float, side: int, init: str,
              batch_size: int, seed: int, quiet: bool, resume: bool, checkpoint_every_seconds: float) -> Path:
    """:func:`pretrain` once its arguments are checked and the output is this process's to write."""
    unfinished = checkpoint_path(output)
    if unfinished.is_file() and not resume:
        raise InputError("an unfinished pretraining of this encoder exists", path=unfinished,
                         fix="add --resume to continue it, or delete it to start again")
    files = find_images(images_dir)
    if len(files) < MIN_IMAGES:
        raise InputError(f"contrastive pretraining needs at least {MIN_IMAGES} images, the folder holds "
                         f"{len(files)}", path=images_dir)
    images = load_images(files, side)
    backbone, log = simclr_pretrain(images, epochs=epochs, budget_minutes=None if epochs else budget_minutes,
                                    init=init, batch_size=batch_size, seed=seed, quiet=quiet, checkpoint=unfinished,
                                    resume=resume, checkpoint_every_seconds=checkpoint_every_seconds)
    info = {"images_dir": str(Path(images_dir).resolve()), "num_images": len(files), "side": side, "init": init,
            "objective": "SimCLR NT-Xent (temperature 0.2)", "epochs": log["epochs"], "seconds": log["seconds"],
            "first_loss": log["loss"][0], "last_loss": float(np.mean(log["loss"][-5:]))}
    path = save_encoder(backbone, output, info)
    for leftover in (unfinished, Path(str(unfinished) + ".sha256")):
        leftover.unlink(missing_ok=True)
    if not quiet:
        print(f"encoder of {len(files)} images, {log['epochs']} epochs ({log['seconds']} s) written to {path}")
    return path
