"""Lesion (object) classification at a given location: multi-scale patches around a point, one stream per scale.

Input: a CSV with ``image, x, y[, z], label[, split]`` (x = column, y = row, z = slice; pixels/voxels of
the image; ``split`` is ``train`` or ``val``, else the images are split 80/20, every point of an image on
one side). Around each point, square (cubic) patches of several sizes (``scales``, in pixels) are cut
and resized to one ``patch`` size: the small one shows the lesion, the large ones its context.
:class:`~medsight.nets.MultiStreamNet` gives each scale its own stream and fuses them. Volumes use full
3D streams, or ``mode="2.5d"``: the three orthogonal planes through the point at every scale, each a 2D
stream. :func:`classify_lesions` trains the multi-scale network and a single-scale one (the middle
scale) on the same points and reports per-class accuracy of both on the validation points.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsight.training.optim import adamw, cosine_step
from medsight.errors import InputError, as_list, output_folder, positive
from medsight.locks import one_writer
from medsight.kept_work import settings_key


@dataclass
class LesionPoints:
    """Points read from a CSV: image paths, coordinates (N, nd) as (row, column[, slice]), labels and splits."""

    images: list[str]
    coords: np.ndarray
    labels: list[str]
    splits: list[str | None]
    source: Path | None = None  # the CSV, and the line of each point in it, for error messages
    lines: list[int] | None = None


def read_points_csv(path: str | Path, images_root: str | Path | None = None) -> LesionPoints:
    """Read ``image, x, y[, z], label[, split]``; relative image paths are taken from ``images_root`` (default: the CSV's folder)."""
    path = Path(path)
    root = Path(images_root) if images_root else path.parent
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"cannot read the points CSV ({e.strerror})", path=path) from None
    except (UnicodeDecodeError, csv.Error):
        raise InputError("is not a CSV text file", path=path,
                         fix="give a CSV with columns image, x, y[, z], label[, split]") from None
    if not rows:
        raise InputError("the points CSV has no rows", path=path)
    missing = [c for c in ("image", "x", "y", "label") if c not in rows[0]]
    if missing:
        raise InputError(f"the points CSV lacks the column(s) {', '.join(missing)}", path=path,
                         fix="give columns image, x, y[, z], label[, split]")
    three_d = "z" in rows[0] and rows[0]["z"] not in ("", None)
    images, coords, labels, splits = [], [], [], []
    for line, row in enumerate(rows, start=2):
        image = Path(row["image"]) if Path(row["image"]).is_absolute() else root / row["image"]
        if not image.is_file():
            raise InputError(f"line {line} names an image that does not exist ({image})", path=path)
        try:
            point = [float(row["y"]), float(row["x"])] + ([float(row["z"])] if three_d else [])
        except (TypeError, ValueError):
            raise InputError(f"line {line}: x, y{', z' if three_d else ''} must be numbers", path=path) from None
        if not all(math.isfinite(v) for v in point):
            raise InputError(f"line {line}: the point in {image} has a NaN or infinite coordinate", path=path)
        images.append(str(image))
        coords.append(point)
        labels.append(str(row["label"]))
        splits.append((row.get("split") or "").strip().lower() or None)
    return LesionPoints(images, np.asarray(coords, dtype=np.float64), labels, splits, path,
                        list(range(2, len(rows) + 2)))


def points_from_voc(annotations_dir: str | Path, images_dir: str | Path, out_csv: str | Path,
                    split_files: dict[str, str | Path] | None = None) -> Path:
    """Write a points CSV from Pascal VOC boxes (box centres); degenerate boxes are skipped."""
    import xml.etree.ElementTree as ET

    split_of = {}
    for split, file in (split_files or {}).items():
        split_of.update({line.strip(): split for line in Path(file).read_text().splitlines() if line.strip()})
    rows = []
    for xml in sorted(Path(annotations_dir).glob("*.xml")):
        root = ET.parse(xml).getroot()
        name = root.findtext("filename") or xml.stem + ".jpg"
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x1 <= x0 or y1 <= y0:
                continue
            rows.append({"image": str(Path(images_dir) / name), "x": (x0 + x1) / 2, "y": (y0 + y1) / 2,
                         "label": obj.findtext("name").strip(), "split": split_of.get(xml.stem, "")})
    out_csv = Path(out_csv)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "x", "y", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return out_csv


def multiscale_patches(image: np.ndarray, point: Sequence[float], scales: Sequence[int], patch: int) -> np.ndarray:
    """Patches of ``scales`` pixels around ``point`` (row, col[, slice]) in ``image`` (C, *s), each resized to ``patch``.

    Returns ``(S, C, patch, patch[, patch])`` float32; outside the image is zero.
    """
    nd = image.ndim - 1
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    out = []
    for scale in scales:
        half = scale / 2.0
        starts = [int(math.floor(p - half + 0.5)) for p in point]
        region = torch.zeros((x.shape[0],) + (int(scale),) * nd)
        src, dst = [slice(None)], [slice(None)]
        for axis, start in enumerate(starts):
            lo, hi = max(0, start), min(x.shape[1 + axis], start + int(scale))
            if hi <= lo:
                break
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        else:
            region[tuple(dst)] = x[tuple(src)]
        if int(scale) != patch:
            mode = "bilinear" if nd == 2 else "trilinear"
            region = F.interpolate(region[None], size=(patch,) * nd, mode=mode, align_corners=False,
                                   antialias=nd == 2 and scale > patch)[0]
        out.append(region)
    return torch.stack(out).numpy()


def as_planes(patches: np.ndarray) -> np.ndarray:
    """2.5D: (S, C, p, p, p) cubes -> (3S, C, p, p), the three orthogonal planes through each cube's centre."""
    from medsight.classification.exam_networks import central_planes

    planes = central_planes(torch.from_numpy(patches))  # (S, 3, C, p, p)
    return planes.reshape(-1, *planes.shape[2:]).numpy()


def _normalise(image: np.ndarray) -> np.ndarray:
    """Per-channel z-score of a whole image (C, *s)."""
    axes = tuple(range(1, image.ndim))
    mean, std = image.mean(axis=axes, keepdims=True), image.std(axis=axes, keepdims=True)
    return (image - mean) / np.maximum(std, 1e-6)


def build_patch_set(points: LesionPoints, scales: Sequence[int], patch: int, mode: str = "3d") -> np.ndarray:
    """Patches of every point, ``(N, streams, C, *patch)`` float32 (each image read once)."""
    from medsight.io import read_image

    out: list[np.ndarray | None] = [None] * len(points.images)
    by_image: dict[str, list[int]] = {}
    for i, image in enumerate(points.images):
        by_image.setdefault(image, []).append(i)
    for image_path, indices in by_image.items():
        array = _normalise(read_image(image_path).array.astype(np.float32))
        if array.ndim - 1 != points.coords.shape[1]:
            raise InputError(f"the image is {array.ndim - 1}D but its points have {points.coords.shape[1]} "
                             "coordinates", path=image_path)
        for i in indices:
            _check_inside(points, i, array.shape[1:])
            p = multiscale_patches(array, points.coords[i], scales, patch)
            out[i] = as_planes(p) if mode == "2.5d" and p.ndim == 5 else p
    return np.stack(out)


def _check_inside(points: LesionPoints, i: int, shape: tuple[int, ...]) -> None:
    """Refuse point ``i`` when it lies outside its image of spatial ``shape`` (rows, columns[, slices])."""
    point = points.coords[i]
    if all(0 <= p < size for p, size in zip(point, shape)):
        return
    where = f"line {points.lines[i]}: " if points.lines else ""
    xyz = ", ".join(f"{v:g}" for v in [point[1], point[0], *point[2:]])
    size = " x ".join(str(v) for v in [shape[1], shape[0], *shape[2:]])
    raise InputError(f"{where}the point ({xyz}) lies outside the image {points.images[i]} ({size} pixels)",
                     path=points.source or points.images[i], fix="x is the column, y the row, from 0")


def split_points(points: LesionPoints, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: the CSV's ``split`` column, else whole images drawn at random."""
    given = np.array([s or "" for s in points.splits])
    if set(given) >= {"train", "val"}:
        return np.flatnonzero(given == "train"), np.flatnonzero(given == "val")
    images = sorted(set(points.images))
    rng = np.random.default_rng(seed)
    val_images = set(rng.choice(images, max(1, int(round(val_fraction * len(images)))), replace=False))
    is_val = np.array([im in val_images for im in points.images])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def train_streams(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int, features: Sequence[int] = (16, 32, 64),
                  batch_size: int = 64, lr: float = 2e-3, seed: int = 0, orientation_free: bool = True):
    """A :class:`MultiStreamNet` on patches ``x`` (N, S, C, *p), class-balanced batches, flips as augmentation."""
    from medsight.nets import MultiStreamNet

    torch.manual_seed(seed)
    nd = x.ndim - 3
    net = MultiStreamNet(streams=x.shape[1], spatial_dims=nd, in_channels=x.shape[2], num_classes=n_classes,
                         features=features, dropout=0.2)
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1))[y]  # between plain and fully balanced sampling
    weights /= weights.sum()
    optimizer = adamw(net.parameters(), lr=lr, weight_decay=1e-2)
    steps = max(1, len(x) // batch_size)
    total = steps * epochs
    rng = np.random.default_rng(seed)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor((counts.sum() / np.maximum(counts, 1)) ** 0.5,
                                                            dtype=torch.float32))
    net.train()
    for step in range(total):
        idx = rng.choice(len(x), batch_size, p=weights)
        xb = torch.from_numpy(x[idx])
        flip_axes = [a for a in range(3, xb.dim()) if rng.random() < 0.5 and (orientation_free or a == xb.dim() - 1)]
        if flip_axes:
            xb = torch.flip(xb, flip_axes)
        cosine_step(optimizer, loss_fn(net(xb), torch.from_numpy(y[idx])), lr, step, total)
    return net.eval()


@torch.inference_mode()
def predict_streams(net, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class probabilities (N, K)."""
    return np.concatenate([torch.softmax(net(torch.from_numpy(x[i:i + batch])), 1).numpy()
                           for i in range(0, len(x), batch)])


def per_class_report(y: np.ndarray, probs: np.ndarray, names: list[str]) -> dict:
    """Accuracy, balanced accuracy and the accuracy (recall) of every class."""
    predicted = probs.argmax(1)
    per_class = {n: float(np.mean(predicted[y == k] == k)) if np.any(y == k) else None for k, n in enumerate(names)}
    defined = [v for v in per_class.values() if v is not None]
    return {"accuracy": float(np.mean(predicted == y)), "balanced_accuracy": float(np.mean(defined)),
            "per_class_accuracy": per_class, "n": int(len(y))}


def classify_lesions(points_csv: str | Path, out_dir: str | Path, scales: Sequence[int] = (32, 64, 128),
                     patch: int = 32, epochs: int = 15, mode: str = "3d", images_root: str | Path | None = None,
                     seed: int = 0, quiet: bool = False) -> dict:
    """Train single-scale (the middle scale) and multi-scale stream networks on the points; report per-class accuracy.

    Writes ``OUT_DIR/lesions.json`` and ``OUT_DIR/predictions.csv`` (validation points, multi-scale model).
    Each trained model's results are kept in ``OUT_DIR/parts/<settings>/`` as it finishes, so a run cut short
    and started again with the same points and settings trains only what it had not finished.
    """
    from medsight.datasets.manifest import atomic_write_text
    from medsight.tasks.base import write_csv

    if mode not in ("3d", "2.5d"):
        raise InputError(f"unknown mode {mode!r}", fix="use 3d or 2.5d (volumes only)")
    scales = as_list(scales, "scales")
    if not scales or min(scales) < 1 or patch < 1:
        raise InputError(f"patch sides must be at least 1 pixel, got scales {list(scales)} and patch {patch}")
    positive(epochs, "epochs", integer=True, minimum=1)
    out = output_folder(out_dir)
    with one_writer(out, "this lesion classification folder",
                    fix="wait for it to finish, or write into another folder with -o"):
        points = read_points_csv(points_csv, images_root)
        names = sorted(set(points.labels))
        y = np.array([names.index(label) for label in points.labels], dtype=np.int64)
        train_idx, val_idx = split_points(points, seed=seed)
        start = time.perf_counter()
        patches = build_patch_set(points, scales, patch, mode)
        per_scale = patches.shape[1] // len(scales)  # 3 planes per scale in 2.5D, else 1
        middle = len(scales) // 2
        results = {"points": len(y), "train_points": int(len(train_idx)), "val_points": int(len(val_idx)),
                   "classes": names, "scales": list(scales), "patch": patch,
                   "mode": mode if points.coords.shape[1] == 3 else "2d",
                   "epochs": epochs, "patch_seconds": round(time.perf_counter() - start, 1)}
        probs_multi = None
        # what a finished model depends on: the points file's bytes, where its images are, the settings
        parts = out / "parts" / settings_key([str(images_root), list(scales), patch, epochs, mode, seed], points_csv)
        for name, streams in (("single_scale", slice(middle * per_scale, (middle + 1) * per_scale)),
                              ("multi_scale", slice(None))):
            part = parts / f"{name}.json"
            if part.is_file():  # finished by an earlier run of the same points and settings: kept
                stored = json.loads(part.read_text())
                probs = np.asarray(stored.pop("validation_probabilities"))
                results[name] = stored
            else:
                t0 = time.perf_counter()
                x = np.ascontiguousarray(patches[:, streams])
                net = train_streams(x[train_idx], y[train_idx], len(names), epochs, seed=seed)
                probs = predict_streams(net, x[val_idx])
                results[name] = {**per_class_report(y[val_idx], probs, names), "streams": int(x.shape[1]),
                                 "scales": [scales[middle]] if name == "single_scale" else list(scales),
                                 "seconds": round(time.perf_counter() - t0, 1)}
                parts.mkdir(parents=True, exist_ok=True)
                atomic_write_text(part, json.dumps({**results[name], "validation_probabilities": probs.tolist()}))
            probs_multi = probs
            if not quiet:
                r = results[name]
                print(f"{name}: accuracy {r['accuracy']:.3f}, balanced {r['balanced_accuracy']:.3f}, per class "
                      + ", ".join(f"{k} {v:.3f}" for k, v in r["per_class_accuracy"].items() if v is not None), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "lesions.json", json.dumps(results, indent=1))
        rows = [{"image": points.images[i], "x": points.coords[i][1], "y": points.coords[i][0], "reference": names[y[i]],
                 "label": names[int(p.argmax())], **{f"prob_{n}": f"{q:.6f}" for n, q in zip(names, p)}}
                for i, p in zip(val_idx, probs_multi)]
        write_csv(out / "predictions.csv", rows,
                  ["image", "x", "y", "reference", "label", *[f"prob_{n}" for n in names]])
        return results
