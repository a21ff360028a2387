"""The dataset manifest: what a dataset is, as one readable JSON file (``DATASET_DIR/manifest.json``).

A manifest references the user's files (absolute paths, never copies). An image reference is a path,
or ``archive.npz::key::index`` for one sample of an array stack (MedMNIST).

Targets by task:
- segmentation: ``case.label`` is the mask file; ``labels`` maps mask value -> name (0 = background).
- classification: ``case.label`` is the class value (int); ``labels`` maps class value -> name.
- detection: ``case.boxes`` lists ``{"box": [x0, y0, x1, y1] or [x0, y0, z0, x1, y1, z1], "label": value}``
  (2D: x = column, y = row, pixels of the original image; 3D: voxel indices); ``labels`` maps class
  value -> name (values start at 1; 0 is background).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import InputError
from medsight.tempfiles import replaced_on_success

MANIFEST_NAME = "manifest.json"
TASKS = ("segmentation", "classification", "detection")
FORMAT_VERSION = 1
#: cross-validation folds when none are asked for (fewer for a dataset too small for them)
DEFAULT_FOLDS = 5


@dataclass
class Case:
    """One case: its image files (one per channel, or one multi-channel file) and its target."""

    id: str
    images: list[str]
    label: Any = None  # mask path (segmentation) or class value (classification)
    boxes: list[dict] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)
    eval_mask: str | None = None
    group: str | None = None  # patient id: cases of one group stay in one fold
    subset: str | None = None  # "train" / "val" when the source fixes a split
    covariates: dict[str, Any] = field(default_factory=dict)  # clinical values beside the images (age, sex)

    def to_json(self) -> dict:
        """Plain dict without empty optional fields."""
        d = asdict(self)
        return {k: v for k, v in d.items() if v not in (None, [], {}) or k in ("id", "images")}


@dataclass
class Manifest:
    """A dataset: task, channels, label names, cases and splits."""

    name: str
    task: str
    dims: int
    channels: list[str]
    labels: dict[str, str]
    cases: list[Case]
    splits: list[dict[str, list[str]]] = field(default_factory=list)
    source: str = ""
    source_format: str = ""
    file_ending: str = ""
    strip_channel_suffix: bool = False  # nnU-Net/MSD layout: `_0000` is removed from case names
    label_mapping: dict[str, int] = field(default_factory=dict)  # raw mask value -> label value
    modality: dict[str, str] = field(default_factory=dict)  # channel index -> "CT", "MR", "RGB", ...
    regions: dict[str, list[int]] = field(default_factory=dict)  # region name -> label values
    ordinal: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}", fix=f"use one of {', '.join(TASKS)}")
        ids = [c.id for c in self.cases]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise InputError(f"duplicate case ids {dup}", path=self.source or None)

    # -- access ---------------------------------------------------------------------------------
    @property
    def case_by_id(self) -> dict[str, Case]:
        """Cases keyed by id."""
        return {c.id: c for c in self.cases}

    @property
    def label_values(self) -> list[int]:
        """Declared label values, sorted."""
        return sorted(int(k) for k in self.labels)

    @property
    def class_names(self) -> list[str]:
        """Label names in the order of the label values."""
        return [self.labels[str(v)] for v in self.label_values]

    def box_class_value(self, name: str, negative: str, path: str | Path | None = None) -> int:
        """The label value of the box class ``name`` of a detection dataset; refused, naming ``path``, when the
        dataset has no classes (every image would be ``negative``) or none of that name."""
        by_name = {class_name: int(value) for value, class_name in self.labels.items()}
        if not by_name:
            raise InputError(f"the dataset has no boxes, so no classes at all: every image would be {negative}",
                             path=path, fix="import a detection dataset whose images hold boxes")
        if name not in by_name:
            raise InputError(f"no class {name!r} in the dataset", path=path,
                             fix=f"use one of {', '.join(sorted(by_name))}")
        return by_name[name]

    def fold_cases(self, fold: int | str) -> tuple[list[Case], list[Case]]:
        """(train, validation) cases of fold ``fold``; ``"all"`` trains on every case, validates on none."""
        if fold == "all":
            return list(self.cases), []
        k = int(fold)
        if not self.splits or not 0 <= k < len(self.splits):
            raise InputError(f"fold {fold} does not exist: the dataset has {len(self.splits)} folds",
                             fix="use --fold 0..%d or --fold all" % (max(len(self.splits), 1) - 1))
        by_id = self.case_by_id
        split = self.splits[k]
        return [by_id[i] for i in split["train"]], [by_id[i] for i in split["val"]]

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The manifest as JSON-ready dict."""
        d = {k: v for k, v in asdict(self).items() if k != "cases"}
        d["format_version"] = FORMAT_VERSION
        d["cases"] = [c.to_json() for c in self.cases]
        return d

    def save(self, dataset_dir: str | Path) -> Path:
        """Write ``manifest.json`` atomically into ``dataset_dir``."""
        path = Path(dataset_dir) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))
        return path

    @staticmethod
    def load(dataset_dir: str | Path) -> "Manifest":
        """Read ``DATASET_DIR/manifest.json``."""
        path = Path(dataset_dir) / MANIFEST_NAME
        if not path.is_file():
            raise InputError("no manifest.json here: not an imported dataset", path=dataset_dir,
                             fix="run `medsight import SOURCE DATASET_DIR` first")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"manifest is not valid JSON ({e.msg} at line {e.lineno})", path=path) from None
        d.pop("format_version", None)
        cases = [Case(**c) for c in d.pop("cases")]
        return Manifest(cases=cases, **d)


def make_splits(cases: list[Case], task: str, n_folds: int | None = None,
                seed: int = 12345) -> list[dict[str, list[str]]]:
    """Deterministic k-fold splits: stratified by class for classification, grouped by patient when known.

    Cases whose ``subset`` is set (the source's own train/val split) give one fold that keeps it. Without
    ``n_folds``, ``DEFAULT_FOLDS`` shrinks to what a small dataset allows (fewer cases or patients: fewer
    folds; a class smaller than the folds: not stratified); a given ``n_folds`` is checked: fewer than 2, more
    than the cases (patients), or more than the smallest class holds (classification) is an InputError.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    asked = n_folds is not None
    n_folds = int(n_folds) if asked else DEFAULT_FOLDS
    if n_folds < 2:
        raise InputError(f"--folds {n_folds}: cross-validation needs at least 2 folds",
                         fix="give --folds 2 or more, or --val-cases for one fixed split")
    subsets = {c.subset for c in cases}
    if subsets >= {"train", "val"} and None not in subsets:
        if asked:
            logging.getLogger("medsight.import").warning(
                f"--folds {n_folds} is not used: the source's own train/validation split (or --val-cases) is kept")
        return [{"train": [c.id for c in cases if c.subset == "train"],
                 "val": [c.id for c in cases if c.subset == "val"]}]
    ids = np.array([c.id for c in cases])
    groups = np.array([c.group if c.group is not None else c.id for c in cases])
    n_groups = len(set(groups.tolist()))
    has_groups = any(c.group is not None for c in cases)
    y = np.array([c.label if isinstance(c.label, (int, np.integer)) else 0 for c in cases])
    smallest_class = int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0
    if asked:
        _check_fold_count(n_folds, n_groups, "patients" if has_groups else "cases",
                          smallest_class if task == "classification" else None)
    if len(cases) < 2:
        return []
    k = max(2, min(n_folds, n_groups))
    if task == "classification" and smallest_class >= k:
        if has_groups:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            it = splitter.split(ids, y, groups)
        else:
            it = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(ids, y)
    elif has_groups:
        rng = np.random.default_rng(seed)
        uniq = np.array(sorted(set(groups.tolist())))
        perm = {g: i for i, g in enumerate(rng.permutation(uniq))}
        it = GroupKFold(n_splits=k).split(ids, y, np.array([perm[g] for g in groups]))
    else:
        it = KFold(n_splits=k, shuffle=True, random_state=seed).split(ids)
    return [{"train": sorted(ids[tr].tolist()), "val": sorted(ids[va].tolist())} for tr, va in it]


def _check_fold_count(n_folds: int, n_groups: int, what: str, smallest_class: int | None) -> None:
    """InputError when ``n_folds`` folds cannot be made: more than the cases (patients), or, for classification,
    more than the smallest class holds (each fold's validation part needs one case of every class)."""
    if n_folds > n_groups:
        raise InputError(f"--folds {n_folds} asks for more folds than the dataset has {what} ({n_groups})",
                         fix=f"give --folds {n_groups} or fewer" if n_groups >= 2 else "add cases")
    if smallest_class is not None and 2 <= smallest_class < n_folds:
        raise InputError(f"--folds {n_folds} asks for more folds than the smallest class has cases "
                         f"({smallest_class}): the folds could not be stratified by class",
                         fix=f"give --folds {smallest_class} or fewer")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` via a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as tmp:
        tmp.write_text(text)
