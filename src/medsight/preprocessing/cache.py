"""The on-disk cache of preprocessed cases: memory-mappable .npy arrays keyed by inputs and plan.

Layout: ``DATASET_DIR/cache/<preprocessing hash>/<case>.npy`` (image), ``<case>_seg.npy`` (label),
``<case>.json`` (properties + the case's input signature). A case is redone only when its files or
the plan's preprocessing entries changed.
"""
from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np

from medsight.datasets.loading import case_signature, read_case_image, read_case_label
from medsight.datasets.manifest import Case, Manifest, atomic_write_text
from medsight.parallel import parallel_map
from medsight.preprocessing.pipeline import OPTIONAL_PREPROCESSING_KEYS, PREPROCESSING_KEYS, preprocess_image
from medsight.tempfiles import remove_stale_temporaries
from medsight.tempfiles import replaced_on_success

MAX_LOCATIONS_PER_CLASS = 10000


def preprocessing_entries(plan: dict) -> dict:
    """The plan entries that change preprocessed arrays (optional ones only where the plan sets them)."""
    entries = {k: plan.get(k) for k in PREPROCESSING_KEYS}
    entries.update({k: plan[k] for k in OPTIONAL_PREPROCESSING_KEYS if plan.get(k)})
    return entries


def preprocessing_hash(plan: dict) -> str:
    """Hash of the plan entries that change preprocessed arrays."""
    return hashlib.sha1(json.dumps(preprocessing_entries(plan), sort_keys=True).encode()).hexdigest()[:12]


def cache_dir(dataset_dir: str | Path, plan: dict) -> Path:
    """Folder of this plan's preprocessed cases."""
    return Path(dataset_dir) / "cache" / preprocessing_hash(plan)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` to ``path`` via a temp file in the same folder and a rename (never a half-written file)."""
    with replaced_on_success(path, ".npy") as tmp:
        np.save(tmp, array)


def class_locations(label: np.ndarray, max_per_class: int = MAX_LOCATIONS_PER_CLASS, seed: int = 0) -> dict[int, np.ndarray]:
    """A capped random subset of voxel indices (M, nd) of every foreground class, for oversampling."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in np.unique(label):
        if v <= 0:
            continue
        idx = np.argwhere(label[0] == v)
        if len(idx) > max_per_class:
            idx = idx[rng.choice(len(idx), max_per_class, replace=False)]
        out[int(v)] = idx.astype(np.int32)
    return out


def preprocess_case(case: Case, manifest: Manifest, plan: dict, out: Path) -> str:
    """Preprocess one case into ``out`` unless its cached signature is current; return its id."""
    sig = case_signature(case)
    meta_path = out / f"{case.id}.json"
    if meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("signature") == sig:
                return case.id
        except json.JSONDecodeError:
            pass
    image = read_case_image(case, manifest)
    label = read_case_label(case, manifest, reference=image)
    array, lab, props = preprocess_image(image, plan, label)
    atomic_save_npy(out / f"{case.id}.npy", array.astype(np.float32))
    if lab is not None:
        atomic_save_npy(out / f"{case.id}_seg.npy", lab.astype(np.int16))
        locs = class_locations(lab, seed=0)
        with replaced_on_success(out / f"{case.id}_locations.npz", ".npz") as tmp:
            np.savez(tmp, **{str(k): v for k, v in locs.items()})
    if manifest.task == "segmentation" and case.eval_mask:
        atomic_save_npy(out / f"{case.id}_eval.npy", _network_eval_mask(case.eval_mask, props, plan))
    props.update({"signature": sig, "id": case.id, "spacing": list(image.spacing)})
    if manifest.task == "classification":
        props["target"] = case.label
    if manifest.task == "detection":
        scale = [n / c for n, c in zip(props["network_shape"], props["cropped_shape"])]
        props["boxes"] = [_box_to_network(b, props["bbox"], scale) for b in case.boxes]
    atomic_write_text(meta_path, json.dumps(props))  # written last: its presence means the case is complete
    return case.id


def _network_eval_mask(path: str, props: dict, plan: dict) -> np.ndarray:
    """The case's evaluation mask (e.g. DRIVE's field of view) on the network grid: cropped as the image
    was, resampled by nearest neighbour; (1, *s) bool."""
    from medsight.io import read_image
    from medsight.preprocessing.crop import crop
    from medsight.preprocessing.resample import resample_label

    mask = (read_image(path).array[:1] > 0).astype(np.int16)
    mask = crop(mask, [tuple(b) for b in props["bbox"]])
    return resample_label(mask, tuple(props["network_shape"]), mode="nearest").astype(bool)


def _box_to_network(box: dict, bbox: list[list[int]], scale: list[float]) -> dict:
    """A box in original (x=column, y=row[, z]) pixels mapped into network (array-axis) space."""
    nd = len(scale)
    coords = box["box"]
    # boxes are (x, y[, z]); array axes of a 2D image are (row, col) = (y, x)
    axis_of = [1, 0] if nd == 2 else [0, 1, 2]
    lo = [0.0] * nd
    hi = [0.0] * nd
    for a in range(nd):
        ax = axis_of[a]
        lo[ax] = (coords[a] - bbox[ax][0]) * scale[ax]
        hi[ax] = (coords[nd + a] - bbox[ax][0]) * scale[ax]
    return {"lo": lo, "hi": hi, "label": int(box["label"])}


def preprocess_dataset(dataset_dir: str | Path, manifest: Manifest, plan: dict, workers: int | None = None,
                       progress: bool = True) -> Path:
    """Preprocess every case that is not cached yet for this plan; return the cache folder."""
    out = cache_dir(dataset_dir, plan)
    out.mkdir(parents=True, exist_ok=True)
    # what a killed run left (an hour old: two folds training at once may preprocess into one cache)
    remove_stale_temporaries(out, min_age_seconds=3600)
    atomic_write_text(out / "plan_preprocessing.json",
                      json.dumps(preprocessing_entries(plan), indent=1))
    parallel_map(partial(preprocess_case, manifest=manifest, plan=plan, out=out), manifest.cases, workers,
                 desc="preprocess", progress=progress)
    return out


class CachedCases:
    """Read access to preprocessed cases (arrays memory-mapped), and the clinical covariates of each case
    (from the manifest: not preprocessed, so not cached; empty when the dataset has none)."""

    def __init__(self, folder: str | Path, case_ids: list[str], covariates: dict[str, dict] | None = None):
        self.folder = Path(folder)
        self.ids = list(case_ids)
        self.covariates = dict(covariates or {})
        self._props: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def props(self, case_id: str) -> dict:
        """Properties of a case (shapes, bbox, target)."""
        if case_id not in self._props:
            self._props[case_id] = json.loads((self.folder / f"{case_id}.json").read_text())
        return self._props[case_id]

    def image(self, case_id: str, mmap: bool = True) -> np.ndarray:
        """The preprocessed image (C, *s)."""
        return np.load(self.folder / f"{case_id}.npy", mmap_mode="r" if mmap else None)

    def label(self, case_id: str, mmap: bool = True) -> np.ndarray | None:
        """The preprocessed label (1, *s) or None."""
        p = self.folder / f"{case_id}_seg.npy"
        return np.load(p, mmap_mode="r" if mmap else None) if p.is_file() else None

    def eval_mask(self, case_id: str) -> np.ndarray | None:
        """The preprocessed evaluation mask (1, *s) bool (scored region, e.g. a field of view) or None."""
        p = self.folder / f"{case_id}_eval.npy"
        return np.load(p) if p.is_file() else None

    def locations(self, case_id: str) -> dict[int, np.ndarray]:
        """Foreground voxel samples per class."""
        p = self.folder / f"{case_id}_locations.npz"
        if not p.is_file():
            return {}
        with np.load(p) as z:
            return {int(k): z[k] for k in z.files}
