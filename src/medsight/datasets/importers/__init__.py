"""Importers: turn the folder layouts people have into a checked ``manifest.json``.

One module per format, each with ``FORMAT`` (its name), ``LOOKS_FOR`` (what it recognises, for
messages), ``detect(source) -> bool`` and ``build(source, task=None, **options) -> Manifest``.
``import_dataset`` detects the format, builds the manifest, reads and checks every file, makes the
splits and only then writes ``DATASET_DIR/manifest.json`` (atomically: nothing half-written on error).

Example:
    >>> from medsight.datasets import import_dataset                  # doctest: +SKIP
    >>> m = import_dataset("data/drive/training", "work/drive")      # doctest: +SKIP
    >>> m.task, len(m.cases), len(m.splits)                           # doctest: +SKIP
    ('segmentation', 20, 5)
"""
from __future__ import annotations

import inspect
import json
import logging
from collections import Counter
from pathlib import Path
from types import ModuleType
from collections.abc import Sequence
from typing import Any

from medsight.datasets.check import scan_dataset, validate_labels
from medsight.datasets.importers import cases, dicom, folder_csv, folder_json, medmnist, msd, pairs, voc
from medsight.datasets.importers.common import mask_label_mapping, parse_name_map
from medsight.datasets.manifest import MANIFEST_NAME, Manifest, make_splits
from medsight.datasets.mask_boxes import DEFAULT_MIN_SIZE, convert_to_detection
from medsight.errors import InputError

log = logging.getLogger("medsight.datasets")

IMPORTERS: dict[str, ModuleType] = {m.FORMAT: m for m in (msd, pairs, cases, folder_csv, folder_json, medmnist,
                                                           voc, dicom)}
FORMATS = tuple(IMPORTERS)
#: formats whose targets are label masks: with ``task="detection"`` their components become boxes
MASK_FORMATS = ("msd", "pairs", "cases")
#: Detection order: the most specific layouts first.
DETECT_ORDER = ("medmnist", "msd", "voc", "folder-json", "pairs", "folder-csv", "dicom", "cases")
#: formats read from one file; folder-csv reads a CSV file or a folder; the others read a folder
FILE_FORMATS = ("medmnist",)
FILE_OR_FOLDER_FORMATS = ("folder-csv",)


def detect_format(source: str | Path) -> str:
    """The format name of SOURCE; InputError listing what was looked for when nothing fits."""
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError("does not exist", path=path)
    if path.is_dir() and not any(not p.name.startswith(".") for p in path.iterdir()):
        raise InputError("the folder is empty", path=path, fix="point to the folder that holds the dataset")
    for name in DETECT_ORDER:
        if IMPORTERS[name].detect(path):
            return name
    looked = "; ".join(f"{name}: {IMPORTERS[name].LOOKS_FOR}" for name in DETECT_ORDER)
    raise InputError(f"cannot tell the dataset format. Looked for {looked}", path=path,
                     fix="arrange the files like one of these or name the format with --format")


def _check_source_kind(path: Path, fmt: str) -> None:
    """InputError when SOURCE is a file for a format that reads a folder, or a folder for one that reads a file."""
    if fmt in FILE_FORMATS and not path.is_file():
        raise InputError(f"is not a file: format {fmt} reads one file", path=path,
                         fix="give the file itself, or name the right --format")
    if fmt not in FILE_FORMATS + FILE_OR_FOLDER_FORMATS and not path.is_dir():
        raise InputError(f"is not a folder: format {fmt} reads a folder", path=path,
                         fix="give the dataset folder, or name the right --format")


def format_options(fmt: str) -> list[str]:
    """The options ``build`` of format ``fmt`` takes (besides source and task)."""
    params = inspect.signature(IMPORTERS[fmt].build).parameters
    return [p for p in params if p not in ("source", "task")]


#: importer options the command line gives a flag of their own (``--images-dir``); the others go through
#: ``--option KEY=VALUE`` (``--option label_key=meta.clinical.diagnosis``)
OPTIONS_WITH_FLAGS = ("images_dir", "labels_dir", "eval_mask_dir", "label_map", "label_names", "regions", "csv",
                      "min_box_size")


def option_syntax(name: str) -> str:
    """How an importer option is written on the command line: its flag, or ``--option NAME=...``."""
    return "--" + name.replace("_", "-") if name in OPTIONS_WITH_FLAGS else f"--option {name}=..."


def _check_options(fmt: str, options: dict[str, Any]) -> None:
    allowed = format_options(fmt)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        given = ", ".join(option_syntax(u) for u in unknown)
        accepted = ", ".join(option_syntax(a) for a in allowed) or "none"
        raise InputError(f"option {given} does not apply to format {fmt}", fix=f"{fmt} takes {accepted}")


def _check_dataset_dir(dataset_dir: Path, source: str, task: str) -> None:
    """DATASET_DIR must be (or become) a folder. Importing again into it replaces its manifest (the plan is
    remade when the data changed); another source or task is refused, as are folders whose manifest.json is not
    a medsight dataset's: the folder's plan, cache and runs belong to what it holds."""
    existing_part = next(p for p in (dataset_dir, *dataset_dir.parents) if p.exists() or p == p.parent)
    if existing_part.exists() and not existing_part.is_dir():
        raise InputError("is a file, not a folder", path=existing_part,
                         fix=f"choose a new folder to import into instead of {dataset_dir}")
    path = dataset_dir / MANIFEST_NAME
    if not path.is_file():
        return
    try:
        existing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        existing = None
    fix = "choose a new DATASET_DIR, or delete this one first"
    if not isinstance(existing, dict) or "task" not in existing or "cases" not in existing:
        raise InputError("holds a manifest.json that is not a medsight dataset's", path=dataset_dir, fix=fix)
    if (existing.get("source"), existing["task"]) != (source, task):
        raise InputError(f"already holds a {existing['task']} dataset imported from {existing.get('source')}; "
                         f"this import is a {task} dataset of {source}", path=dataset_dir, fix=fix)


def _discover_labels(manifest: Manifest, facts: dict) -> list[str]:
    """Fill ``labels`` and ``label_mapping`` of a segmentation set from the mask values read at check time."""
    counts: Counter = Counter()
    for case_facts in facts.values():
        counts.update(case_facts.label_counts)
    where = manifest.extra.get("labels_dir") or manifest.source
    manifest.label_mapping, manifest.labels, notes = mask_label_mapping(dict(counts), where)
    return notes


def _name_labels(manifest: Manifest, label_names: str | dict) -> None:
    for value, name in parse_name_map(label_names, "--label-names", sep=":").items():
        if value not in manifest.labels:
            raise InputError(f"--label-names names value {value}, which is not a label value "
                             f"({', '.join(manifest.labels)})")
        manifest.labels[value] = name


def _parse_regions(regions: str | dict, manifest: Manifest) -> dict[str, list[int]]:
    """``name=v,v;name=v`` (or a dict) -> {name: [values]}, each value a foreground label of the dataset."""
    if isinstance(regions, str):
        parsed = {}
        for item in filter(None, (x.strip() for x in regions.split(";"))):
            name, _, values = item.partition("=")
            try:
                parsed[name.strip()] = [int(v) for v in values.split(",") if v.strip()]
            except ValueError:
                raise InputError(f"--regions entry {item!r} is not name=value,value") from None
        regions = parsed
    out = {str(k): sorted({int(v) for v in vs}) for k, vs in regions.items()}
    for name, values in out.items():
        bad = [v for v in values if str(v) not in manifest.labels or v == 0]
        if not values or bad:
            raise InputError(f"region {name!r} names {bad or 'no'} label values; foreground labels are "
                             f"{', '.join(v for v in manifest.labels if v != '0')}")
    return out


def _fix_validation_cases(manifest: Manifest, val_cases: Sequence[str] | str) -> None:
    """Mark the named cases ``val`` and every other ``train`` (one fold keeping that split)."""
    entries = [str(val_cases)] if isinstance(val_cases, (str, Path)) else [str(v) for v in val_cases]
    wanted = []
    for entry in entries:
        text = Path(entry).read_text() if Path(entry).is_file() else entry
        wanted += text.replace(",", " ").split()
    ids = {c.id for c in manifest.cases}
    unknown = [v for v in wanted if v not in ids]
    if unknown or not wanted:
        raise InputError(f"--val-cases names {', '.join(unknown) or 'no case'}, not a case of this dataset",
                         fix=f"case ids look like {', '.join(sorted(ids)[:3])}")
    if len(set(wanted)) == len(ids):
        raise InputError("--val-cases names every case: nothing is left to train on")
    for c in manifest.cases:
        c.subset = "val" if c.id in wanted else "train"


def import_dataset(source: str | Path, dataset_dir: str | Path, format: str = "auto", task: str | None = None,
                   n_folds: int | None = None, workers: int = 2, progress: bool = True, label_names: str | dict | None = None,
                   val_cases: Sequence[str] | str | None = None, regions: str | dict | None = None,
                   min_box_size: int | None = None, **options: Any) -> Manifest:
    """Import SOURCE (format auto-detected or named), check every file, write DATASET_DIR/manifest.json.

    ``options`` are the format's own (``images_dir``, ``label_map``, ``csv``, ...; None values ignored);
    ``label_names`` ("1:vessel") renames label values after import; ``val_cases`` (case ids, a
    comma-separated string, or a text file of ids) fixes one train/validation split instead of
    ``n_folds`` folds; ``regions`` ("whole=1,2,3,4;core=1,3,4" or a dict) defines overlapping structures
    scored (and reported) instead of the single labels, as the BraTS regions. ``task="detection"`` on a
    format of label masks (msd, pairs, cases) makes every connected component of each label, or of each
    region, a box (components under ``min_box_size`` voxels skipped). Returns the saved Manifest.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError("does not exist", path=path)
    path = path.resolve()
    fmt = detect_format(path) if format in (None, "", "auto") else format
    if fmt not in IMPORTERS:
        raise InputError(f"unknown format {fmt!r}", fix=f"use one of auto, {', '.join(FORMATS)}")
    _check_source_kind(path, fmt)
    options = {k: v for k, v in options.items() if v is not None}
    _check_options(fmt, options)
    boxes_from_masks = task == "detection" and fmt in MASK_FORMATS
    if min_box_size is not None and not boxes_from_masks:
        raise InputError("--min-box-size applies to boxes made from label masks",
                         fix=f"use it with --task detection on a format of masks ({', '.join(MASK_FORMATS)})")
    manifest = IMPORTERS[fmt].build(path, task="segmentation" if boxes_from_masks else task, **options)
    manifest.source, manifest.source_format = str(path), fmt
    _check_dataset_dir(Path(dataset_dir).expanduser(), manifest.source,
                       "detection" if boxes_from_masks else manifest.task)
    if val_cases is not None:
        _fix_validation_cases(manifest, val_cases)
    warnings = list(manifest.extra.pop("warnings", []))
    facts = scan_dataset(manifest, workers=workers, progress=progress)
    if manifest.task == "segmentation" and not manifest.labels:
        notes = _discover_labels(manifest, facts)
        for note in notes:
            log.warning(note)
        warnings += notes
    if label_names:
        _name_labels(manifest, label_names)
    if regions:
        manifest.regions = _parse_regions(regions, manifest)
    check_warnings = [w for f in facts.values() for w in f.warnings] + validate_labels(manifest, facts)
    if boxes_from_masks:
        check_warnings = [w for w in check_warnings if "mask is empty" not in w]  # an empty mask is a negative
        check_warnings += convert_to_detection(manifest, manifest.regions or None,
                                               DEFAULT_MIN_SIZE if min_box_size is None else int(min_box_size),
                                               workers=workers, progress=progress)
    _log_warnings(check_warnings)
    manifest.splits = make_splits(manifest.cases, manifest.task, n_folds=n_folds)
    if warnings or check_warnings:
        manifest.extra["warnings"] = warnings + check_warnings
    blank = sorted(case_id for case_id, f in facts.items() if f.without_picture)
    if blank:
        manifest.extra["cases_without_a_picture"] = blank
    manifest.save(dataset_dir)
    return manifest


def _log_warnings(warnings: list[str], shown: int = 3) -> None:
    """Log the import's warnings, at most ``shown`` of each kind (the text after the file's name) and then a
    count; every one of them stays in the manifest (``extra.warnings``)."""
    kinds: dict[str, int] = {}
    for warning in warnings:
        kind = warning.split(": ", 1)[-1]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kinds[kind] <= shown:
            log.warning(warning)
    for kind, count in kinds.items():
        if count > shown:
            log.warning(f"... and {count - shown} more files: {kind} (all listed in manifest.json, extra.warnings)")


__all__ = ["IMPORTERS", "FORMATS", "detect_format", "format_options", "import_dataset"]
