"""Multiple-instance learning: image (bag) labels only; tiles are the instances; attention says where.

The bag label of an image is whether it holds an object of ``positive_class`` (derived from a detection
dataset's boxes, e.g. BCCD: "contains platelets"). Each image is downsampled by ``downsample`` and cut
into ``tile`` x ``tile`` tiles. Every tile is encoded, gated attention pooling (Ilse et al. 2018) makes the
bag feature, a linear layer the bag logit. The attention weights are the instance scores. Two tile
encoders (``encoder=``): ``"imagenet"`` (the default), the frozen ImageNet EfficientNet-Lite0's pooled
features of the tile (resized to ``FEATURE_SIDE``, averaged over its 8 rotations and flips), computed once
and kept in the dataset's cache, with a trained projection; ``"scratch"``, a small CNN trained with the pooling. A few hundred bags are too
few to learn a tile encoder from the bag labels alone (BCCD: bag AUC 0.60 from scratch). With
the boxes at hand, the instance scores (attention times the tile's logit difference) are scored against instance truth: a tile is positive when it holds the centre of
a box of the positive class. Reported: bag AUC on the validation images; for positive validation bags, the
instance AUC of the attention weights and how often the most attended tile holds a positive object.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from medsight.training.optim import train_in_memory
from medsight.datasets.manifest import Manifest
from medsight.errors import InputError, output_folder, positive
from medsight.locks import one_writer
from medsight.nets import AttentionMILPooling
from medsight.nets.multistream import StreamEncoder
from medsight.progress import log as _log


ENCODERS = ("imagenet", "scratch")
#: side a tile is resized to before the ImageNet encoder (EfficientNet-Lite0 pools 32x: 3 x 3 final maps)
FEATURE_SIDE = 96


class AttentionMIL(nn.Module):
    """Tiles ``(B, N, C, t, t)`` -> bag logits ``(B, K)``; ``instance_scores`` gives the attention ``(B, N)``.

    With ``in_features`` the instances are feature vectors ``(B, N, in_features)`` (precomputed by a frozen
    network) and the encoder is a trained projection to ``projection`` features instead of a CNN.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, features=(16, 32, 64), hidden: int = 64,
                 dropout: float = 0.1, in_features: int | None = None, projection: int = 128):
        super().__init__()
        if in_features is None:
            self.encoder: nn.Module = StreamEncoder(2, in_channels, features)
            width = self.encoder.out_features
        else:
            self.encoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, projection), nn.ReLU(inplace=True))
            width = projection
        self.pool = AttentionMILPooling(width, hidden=hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def _pooled(self, tiles: Tensor) -> tuple[Tensor, Tensor]:
        b, n = tiles.shape[:2]
        feats = self.encoder(tiles.reshape(b * n, *tiles.shape[2:])).view(b, n, -1)
        return self.pool(feats)

    def instance_scores(self, tiles: Tensor) -> Tensor:
        """Attention weight of every tile, ``(B, N)`` (sums to 1 per bag)."""
        return self._pooled(tiles)[1]

    def instance_contributions(self, tiles: Tensor) -> Tensor:
        """Each tile's share of the bag's positive-minus-negative logit, ``(B, N)``.

        The bag logit difference is ``sum_n a_n (w_1 - w_0)^T h_n + c``, so ``a_n (w_1 - w_0)^T h_n`` says how
        much tile n pushes the bag towards positive: attention alone also rises on tiles that argue for
        the negative class (additive MIL, Javed et al. 2022). Binary bags only.
        """
        b, n = tiles.shape[:2]
        feats = self.encoder(tiles.reshape(b * n, *tiles.shape[2:])).view(b, n, -1)
        weights = self.pool(feats)[1]
        linear = self.head[-1]
        direction = linear.weight[1] - linear.weight[0]
        return weights * (feats @ direction)

    def forward(self, tiles: Tensor) -> Tensor:
        """Bag logits ``(B, num_classes)``."""
        return self.head(self._pooled(tiles)[0])


def tile_image(image: np.ndarray, downsample: int, tile: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(C, H, W) -> tiles (N, C, tile, tile) of the image shrunk ``downsample`` times, row-major; and the grid."""
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    h, w = image.shape[1] // downsample, image.shape[2] // downsample
    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    rows, cols = h // tile, w // tile
    x = x[:, :rows * tile, :cols * tile]
    tiles = x.reshape(x.shape[0], rows, tile, cols, tile).permute(1, 3, 0, 2, 4).reshape(rows * cols, x.shape[0], tile, tile)
    return tiles.numpy(), (rows, cols)


def tile_truth(boxes: list[dict], positive_value: int, grid: tuple[int, int], downsample: int, tile: int) -> np.ndarray:
    """1 for each tile (row-major) holding the centre of a box of the positive class."""
    truth = np.zeros(grid[0] * grid[1], dtype=np.int64)
    for b in boxes:
        if int(b["label"]) != positive_value:
            continue
        x0, y0, x1, y1 = b["box"][:4]
        r, c = int((y0 + y1) / 2 / downsample // tile), int((x0 + x1) / 2 / downsample // tile)
        if 0 <= r < grid[0] and 0 <= c < grid[1]:
            truth[r * grid[1] + c] = 1
    return truth


def load_bags(manifest: Manifest, positive_class: str, downsample: int = 2, tile: int = 32, standardize: bool = True,
              dataset_dir: str | Path | None = None):
    """Tiles (B, N, C, t, t), bag labels (B,), tile truth (B, N), case ids. Tiles are float32 z-scored per
    image, or with ``standardize=False`` the image's own intensities (float32). Errors name ``dataset_dir``
    when given, else the folder the dataset was imported from."""
    from medsight.datasets.loading import read_case_image

    where = dataset_dir or manifest.source or None
    if manifest.task != "detection" or manifest.dims != 2:
        raise InputError(f"MIL bags are made from a 2D detection dataset (boxes), this one is {manifest.dims}D "
                         f"{manifest.task}", path=where)
    positive = manifest.box_class_value(positive_class, "a negative bag", where)
    tiles, labels, truth, grid0 = [], [], [], None
    for case in manifest.cases:
        image = read_case_image(case).array.astype(np.float32)
        if standardize:
            image = (image - image.mean(axis=(1, 2), keepdims=True)) / np.maximum(image.std(axis=(1, 2), keepdims=True), 1e-6)
        t, grid = tile_image(image, downsample, tile)
        if grid0 is None:
            grid0 = grid
        if grid != grid0:
            raise InputError(f"image gives a {grid} tile grid but the first gave {grid0}: MIL here needs one image size",
                             path=case.images[0])
        tiles.append(t)
        truth.append(tile_truth(case.boxes, positive, grid, downsample, tile))
        labels.append(int(any(int(b["label"]) == positive for b in case.boxes)))
    return np.stack(tiles), np.array(labels), np.stack(truth), [c.id for c in manifest.cases]


@torch.inference_mode()
def tile_features(tiles: np.ndarray, side: int = FEATURE_SIDE, batch: int = 512, progress: bool = False) -> np.ndarray:
    """Frozen ImageNet EfficientNet-Lite0 features of RGB tiles ``(B, N, 3, t, t)`` (0-255): ``(B, N, F)``.

    Each tile is resized to ``side`` and its pooled features (the last two stages and the head,
    :func:`medsight.classification.frozen.extract_features`) are averaged over its 8 rotations and flips.
    """
    import torch.nn.functional as F

    from medsight.classification.finetune import build_model
    from medsight.classification.frozen import extract_features
    from medsight.progress import progress as progress_bar

    if tiles.shape[2] != 3:
        raise InputError(f"the ImageNet tile encoder needs RGB images, these have {tiles.shape[2]} channel(s)",
                         fix="use --encoder scratch")
    model = build_model("imagenet", 2)
    flat = tiles.reshape(-1, *tiles.shape[2:])
    out = []
    for i in progress_bar(range(0, len(flat), batch), requested=progress, desc="tile features", unit="batch"):
        x = F.interpolate(torch.from_numpy(np.ascontiguousarray(flat[i:i + batch], dtype=np.float32)),
                          size=(side, side), mode="bilinear", align_corners=False)
        out.append(extract_features(model, x.clamp_(0, 255).round_().to(torch.uint8).numpy()))
    return np.concatenate(out).reshape(*tiles.shape[:2], -1).astype(np.float32)


def cached_tile_features(dataset_dir: str | Path, tiles: np.ndarray, ids: list[str], downsample: int, tile: int,
                         progress: bool = False) -> np.ndarray:
    """:func:`tile_features`, kept in ``DATASET_DIR/cache/mil_features/`` and reused by a later run on the same
    cases with the same tiling (the extraction is the slow part: minutes for a few hundred images)."""
    from medsight.kept_work import settings_key
    from medsight.preprocessing.cache import atomic_save_npy

    key = settings_key([ids, downsample, tile, FEATURE_SIDE, "efficientnet-lite0 imagenet 8 views"])
    path = Path(dataset_dir) / "cache" / "mil_features" / f"tiles_{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
        except (OSError, ValueError):
            cached = None  # unreadable: extracted again and replaced
        if cached is not None and cached.shape[:2] == tiles.shape[:2]:
            return cached
    features = tile_features(tiles, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(path, features)
    return features


def train_mil(tiles: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int = 8, lr: float = 1e-3,
              seed: int = 0) -> AttentionMIL:
    """Train :class:`AttentionMIL` on bags: tiles ``(B, N, C, t, t)`` with flips as augmentation, or feature
    vectors ``(B, N, F)`` (standardised inputs expected); AdamW, cosine learning rate."""
    torch.manual_seed(seed)
    features = tiles.ndim == 3
    model = AttentionMIL(in_features=tiles.shape[2]) if features else AttentionMIL(tiles.shape[2])
    return train_in_memory(model, tiles, labels, nn.CrossEntropyLoss(), epochs, batch_size, lr, 1e-2, seed,
                           flip_dims=() if features else (3, 4), name="MIL")


@torch.inference_mode()
def predict_mil(model: AttentionMIL, tiles: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive-bag probabilities (B,), attention weights (B, N) and tile contributions (B, N)."""
    probs, attention, contribution = [], [], []
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(tiles[i:i + batch])
        probs.append(torch.softmax(model(x), 1)[:, 1].numpy())
        attention.append(model.instance_scores(x).numpy())
        contribution.append(model.instance_contributions(x).numpy())
    return np.concatenate(probs), np.concatenate(attention), np.concatenate(contribution)


def localisation_metrics(scores: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> dict:
    """On positive bags: instance AUC of the scores (pooled tiles) and the share whose top tile is positive."""
    from medsight.evaluation.classification import roc_auc

    pos = labels == 1
    flat_truth, flat_scores = truth[pos].ravel(), scores[pos].ravel()
    try:
        auc = roc_auc(flat_truth, flat_scores)
    except ValueError:
        auc = None
    usable = pos & (truth.sum(1) > 0)
    hits = [truth[i, int(np.argmax(scores[i]))] == 1 for i in np.flatnonzero(usable)]
    chance = float(np.mean(truth[usable].mean(1))) if usable.any() else None
    return {"instance_auc": auc, "top_tile_hit_rate": float(np.mean(hits)) if hits else None,
            "top_tile_chance_rate": chance, "positive_bags": int(pos.sum())}


def _auc_or_none(y: np.ndarray, scores: np.ndarray) -> float | None:
    from medsight.evaluation.classification import roc_auc

    try:
        return roc_auc(y, scores)
    except ValueError:
        return None


def run_mil(dataset_dir: str | Path, out_dir: str | Path, positive_class: str, epochs: int = 20,
            downsample: int = 2, tile: int = 32, encoder: str = "imagenet", seed: int = 0, quiet: bool = False) -> dict:
    """Train attention-MIL on fold 0 of a detection dataset's images (bag = contains ``positive_class``); report."""
    from medsight.datasets.manifest import atomic_write_text

    if encoder not in ENCODERS:
        raise InputError(f"unknown tile encoder {encoder!r}", fix=f"use one of {', '.join(ENCODERS)}")
    if downsample < 1 or tile < 1:
        raise InputError(f"downsample and tile must be at least 1, got {downsample} and {tile}")
    positive(epochs, "epochs", integer=True, minimum=1)
    out = output_folder(out_dir)
    with one_writer(out, "this MIL folder", fix="wait for it to finish, or write into another folder with -o"):
        manifest = Manifest.load(dataset_dir)
        if not manifest.splits:
            raise InputError("the dataset has no train/validation split", path=dataset_dir)
        start = time.perf_counter()
        tiles, labels, truth, ids = load_bags(manifest, positive_class, downsample, tile,
                                              standardize=encoder == "scratch", dataset_dir=dataset_dir)
        where = {c: i for i, c in enumerate(ids)}
        train_idx = np.array([where[c] for c in manifest.splits[0]["train"]])
        val_idx = np.array([where[c] for c in manifest.splits[0]["val"]])
        if encoder == "imagenet":
            _log(f"MIL: ImageNet features of {tiles.shape[0] * tiles.shape[1]} tiles", quiet)
            tiles = cached_tile_features(dataset_dir, tiles, ids, downsample, tile, progress=not quiet)
            mean = tiles[train_idx].reshape(-1, tiles.shape[2]).mean(0)
            std = tiles[train_idx].reshape(-1, tiles.shape[2]).std(0) + 1e-6  # the training bags' tiles only
            tiles = (tiles - mean) / std
        model = train_mil(tiles[train_idx], labels[train_idx], epochs, seed=seed)
        probs, attention, scores = predict_mil(model, tiles[val_idx])
        by_attention = localisation_metrics(attention, truth[val_idx], labels[val_idx])
        result = {"positive_class": positive_class, "bags": len(ids), "positive_bags": int(labels.sum()),
                  "train_bags": int(len(train_idx)), "val_bags": int(len(val_idx)), "tiles_per_bag": int(tiles.shape[1]),
                  "tile": tile, "downsample": downsample, "encoder": encoder, "epochs": epochs,
                  "bag_auc": _auc_or_none(labels[val_idx], probs),
                  "bag_accuracy": float(np.mean((probs >= 0.5) == labels[val_idx])),
                  **{k: v for k, v in localisation_metrics(scores, truth[val_idx], labels[val_idx]).items()
                     if k != "positive_bags"},
                  "positive_val_bags": by_attention["positive_bags"],
                  "instance_score": "attention x the tile's logit difference (contribution)",
                  "attention_only": {k: by_attention[k] for k in ("instance_auc", "top_tile_hit_rate")},
                  "seconds": round(time.perf_counter() - start, 1)}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "mil.json", json.dumps(result, indent=1))
        np.savez_compressed(out / "instance_scores.npz", case=np.array(ids)[val_idx], bag_probability=probs,
                            attention=attention, contribution=scores, tile_truth=truth[val_idx])
        if not quiet:
            print(f"MIL '{positive_class}': bag AUC {result['bag_auc']}; instance AUC "
                  f"{result['instance_auc'] if result['instance_auc'] is None else round(result['instance_auc'], 3)}, "
                  f"top tile holds one in {result['top_tile_hit_rate']} of positive bags "
                  f"(chance {result['top_tile_chance_rate']})", flush=True)
        return result
