"""``medmnist``: a MedMNIST ``.npz`` (train_/val_[/test_] images and labels) -> one case per sample.

Images are referenced as ``file.npz::train_images::17`` (never copied). The file's train/val subsets are
kept (``make_splits`` then gives one fold that keeps them); test samples, when present, are imported
with subset ``test`` and stay out of the splits. Arrays: (N, H, W) grey 2D, (N, H, W, 3) RGB 2D,
(N, D, H, W) grey 3D. Class names are known for a few sets (BreastMNIST, RetinaMNIST: ordinal grades,
AdrenalMNIST3D, PneumoniaMNIST), else ``class_k``.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError

FORMAT = "medmnist"
LOOKS_FOR = "a MedMNIST .npz file (train_images, train_labels, val_images, val_labels)"
SUBSETS = ("train", "val", "test")
KNOWN_LABELS = {
    "breastmnist": {"0": "malignant", "1": "normal, benign"},
    "retinamnist": {str(k): f"grade_{k}" for k in range(5)},
    "adrenalmnist3d": {"0": "normal", "1": "hyperplasia"},
    "pneumoniamnist": {"0": "normal", "1": "pneumonia"},
}
ORDINAL = {"retinamnist"}
MAX_CLASS_VALUE = 2**31 - 1


def npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of the arrays in an .npz, read from the headers only."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                shapes[name[:-4]] = (tuple(shape), np.dtype(dtype))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"is not a readable .npz archive ({e})", path=path) from None
    return shapes


def detect(source: Path) -> bool:
    """True for an .npz file with train_images and train_labels."""
    if not (source.is_file() and source.suffix.lower() == ".npz"):
        return False
    try:
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return True  # an .npz that fails to open: let build() report it
    return {"train_images.npy", "train_labels.npy"} <= names


def dataset_key(path: Path) -> str:
    """MedMNIST set name from the file name: ``adrenalmnist3d_64.npz`` gives ``adrenalmnist3d``."""
    return re.sub(r"_(28|64|128|224)$", "", path.stem.lower())


def _labels_of(path: Path, key: str, n: int) -> np.ndarray:
    """The class labels at ``key``, each a finite whole number >= 0; InputError names the first that is not."""
    try:
        with np.load(path) as data:
            labels = np.asarray(data[key])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {key} ({e})", path=path) from None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise InputError(f"{key} has shape {labels.shape}: expected one class per sample ({n},)"
                         + (" (multi-label sets are not supported)" if labels.ndim == 2 else ""), path=path)
    if labels.dtype.kind not in "biuf":
        kind = "text" if labels.dtype.kind in "US" else str(labels.dtype)
        raise InputError(f"{key} holds {kind} values such as {labels[0].item()!r}, not class numbers",
                         path=path, fix="store the classes as integers 0..K-1")
    with np.errstate(invalid="ignore"):
        bad = (labels < 0) | ~np.isfinite(labels) | (labels != np.floor(labels)) | (labels > MAX_CLASS_VALUE)
    if bad.any():
        index = int(np.argmax(bad))
        raise InputError(f"{key}[{index}] is {labels[index].item()}: class labels must be finite whole numbers >= 0",
                         path=path, fix="store the classes as integers 0..K-1")
    return labels.astype(np.int64)


def build(source: Path, task: str | None = None) -> Manifest:
    """Manifest of a MedMNIST archive (classification)."""
    if task not in (None, "classification"):
        raise InputError(f"MedMNIST files hold one class per image: classification, not {task}", path=source)
    shapes = npz_shapes(source)
    subsets = [s for s in SUBSETS if f"{s}_images" in shapes]
    if "train" not in subsets or any(f"{s}_labels" not in shapes for s in subsets):
        raise InputError(f"holds {sorted(shapes)}: expected train_images/train_labels (and val_, test_)",
                         path=source)
    shape0 = shapes["train_images"][0]
    if len(shape0) == 4 and shape0[-1] == 3:
        dims, channels, modality = 2, ["R", "G", "B"], "RGB"
    elif len(shape0) in (3, 4):
        dims, channels, modality = len(shape0) - 1, ["grey"], "other"
    else:
        raise InputError(f"train_images has shape {shape0}: expected (N,H,W), (N,H,W,3) or (N,D,H,W)", path=source)
    cases, all_values = [], set()
    for subset in subsets:
        n = shapes[f"{subset}_images"][0][0]
        if n == 0:
            raise InputError(f"{subset}_images holds no images", path=source,
                             fix="a MedMNIST file needs train images" if subset == "train"
                             else f"fill the {subset} split or leave its arrays out")
        if shapes[f"{subset}_images"][0][1:] != shape0[1:]:
            raise InputError(f"{subset}_images has samples of shape {shapes[f'{subset}_images'][0][1:]} "
                             f"but train_images {shape0[1:]}", path=source)
        labels = _labels_of(source, f"{subset}_labels", n)
        all_values.update(labels.tolist())
        width = max(4, len(str(n - 1)))
        cases += [Case(id=f"{subset}_{i:0{width}d}", images=[f"{source}::{subset}_images::{i}"],
                       label=int(v), subset=subset) for i, v in enumerate(labels)]
    key = dataset_key(source)
    known = KNOWN_LABELS.get(key, {})
    labels = {str(v): known.get(str(v), f"class_{v}") for v in sorted(all_values)}
    return Manifest(name=key, task="classification", dims=dims, channels=channels, labels=labels, cases=cases,
                    modality={str(i): modality for i in range(len(channels))}, ordinal=key in ORDINAL,
                    extra={"subset_counts": {s: sum(c.subset == s for c in cases) for s in subsets}})
