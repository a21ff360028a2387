"""``msd``: a Medical Segmentation Decathlon (v1) or nnU-Net v2 raw dataset folder with ``dataset.json``.

- MSD v1: ``training`` lists ``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}``,
  ``labels`` maps number -> name, ``modality`` index -> name; one image file may hold every modality (4D
  NIfTI). nnU-Net v1 folders (same JSON, files ``x_0000.nii.gz``, ``x_0001.nii.gz`` on disk) are read too.
- nnU-Net v2: ``channel_names`` index -> name, ``labels`` name -> number (or -> list of numbers: regions),
  ``file_ending``; images ``imagesTr/<case>_0000<ending>`` (one per channel, or one RGB ``_0000.png`` for
  channels R, G, B) and ``labelsTr/<case><ending>``; an optional ``dataset`` dict lists files per case.
``strip_channel_suffix`` is set when the image files carry the ``_0000`` suffix (v2, nnU-Net v1).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from medsight.datasets.importers.common import RGB_NAMES, modality_map, stem, warn
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "msd"
LOOKS_FOR = "a folder with dataset.json (MSD v1 / nnU-Net v2) and imagesTr/, labelsTr/"
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def detect(source: Path) -> bool:
    """True when SOURCE holds dataset.json, or looks like one that lost it (imagesTr/ present)."""
    return source.is_dir() and ((source / "dataset.json").is_file() or (source / "imagesTr").is_dir())


def read_dataset_json(source: Path) -> dict:
    """The parsed dataset.json of SOURCE; InputError when missing or not JSON."""
    path = source / "dataset.json"
    if not path.is_file():
        raise InputError("dataset.json missing: an MSD / nnU-Net folder needs it", path=source,
                         fix="add dataset.json with channel_names (or modality), labels and file_ending")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"is not valid JSON ({e})", path=path) from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise InputError("has no 'labels' entry", path=path, fix="add labels, e.g. {\"background\": 0, \"tumour\": 1}")
    return meta


def parse_labels(raw: dict, path: Path) -> tuple[dict[str, str], dict[str, list[int]], int | None]:
    """(labels value -> name, regions name -> values, ignore value) from either dialect's ``labels``."""
    if all(re.fullmatch(r"-?\d+", str(k)) for k in raw):  # MSD v1: {"0": "background", "1": "edema"}
        return {str(int(k)): str(v) for k, v in raw.items()}, {}, None
    labels: dict[str, str] = {}
    regions: dict[str, list[int]] = {}
    ignore = None
    has_regions = any(isinstance(v, (list, tuple)) for v in raw.values())
    try:
        for name, value in raw.items():
            values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
            if name == "ignore":
                ignore = values[0]
            if has_regions and values != [0]:
                regions[name] = values
            if len(values) == 1:
                labels[str(values[0])] = name
            for v in values:
                labels.setdefault(str(v), f"label_{v}")
    except (TypeError, ValueError):
        raise InputError(f"labels entry {raw!r} is neither number->name nor name->number", path=path) from None
    labels.setdefault("0", "background")
    return dict(sorted(labels.items(), key=lambda kv: int(kv[0]))), regions, ignore


def _file(source: Path, rel: str, what: str) -> Path:
    path = (source / rel).resolve()
    if not path.is_file():
        raise InputError(f"{what} listed in dataset.json does not exist", path=path)
    return path


def _channel_files(folder: Path, case: str, ending: str) -> list[Path]:
    return sorted(folder.glob(f"{glob_escape(case)}_[0-9][0-9][0-9][0-9]{ending}"))


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _v1_cases(source: Path, meta: dict) -> tuple[list[Case], bool]:
    """Cases of an MSD v1 ``training`` list; True when files carry the channel suffix (nnU-Net v1)."""
    cases, suffixed = [], False
    for entry in meta.get("training", []):
        image_rel, label_rel = entry.get("image"), entry.get("label")
        if not image_rel or not label_rel:
            raise InputError(f"training entry {entry!r} needs image and label", path=source / "dataset.json")
        image = (source / image_rel).resolve()
        case_id = stem(image)
        if image.is_file():
            images = [image]
        else:
            images = _channel_files(image.parent, case_id, image.name[len(case_id):])
            if not images:
                raise InputError("image listed in dataset.json does not exist", path=image)
            suffixed = True
        cases.append(Case(id=case_id, images=[str(p) for p in images],
                          label=str(_file(source, label_rel, "label"))))
    return cases, suffixed


def _v2_cases(source: Path, meta: dict, ending: str, n_channels: int, one_rgb_file: bool) -> list[Case]:
    """Cases of an nnU-Net v2 folder (imagesTr/<case>_XXXX<ending>, labelsTr/<case><ending>)."""
    if isinstance(meta.get("dataset"), dict):
        return [Case(id=cid, images=[str(_file(source, p, "image")) for p in entry["images"]],
                     label=str(_file(source, entry["label"], "label")))
                for cid, entry in sorted(meta["dataset"].items())]
    images_dir, labels_dir = source / "imagesTr", source / "labelsTr"
    if not images_dir.is_dir():
        raise InputError("imagesTr/ folder missing", path=source)
    by_case: dict[str, list[Path]] = {}
    for path in sorted(images_dir.iterdir()):
        if not path.name.endswith(ending) or path.name.startswith("."):
            continue
        m = CHANNEL_SUFFIX.match(path.name[: -len(ending)])
        if not m:
            raise InputError("image file lacks the _XXXX channel suffix nnU-Net v2 needs", path=path,
                             fix="name images <case>_0000" + ending)
        by_case.setdefault(m["case"], []).append(path)
    expected = 1 if one_rgb_file else n_channels
    cases = []
    for case_id, files in sorted(by_case.items()):
        suffixes = [CHANNEL_SUFFIX.match(p.name[: -len(ending)])["channel"] for p in files]
        if suffixes != [f"{k:04d}" for k in range(expected)]:
            raise InputError(f"case {case_id} has channel files {suffixes} but dataset.json declares {expected}",
                             path=files[0], fix="one file per channel: _0000 .. _%04d" % (expected - 1))
        label = labels_dir / f"{case_id}{ending}"
        if not label.is_file():
            raise InputError(f"case {case_id} has no label file", path=label)
        cases.append(Case(id=case_id, images=[str(p.resolve()) for p in files], label=str(label.resolve())))
    return cases


def build(source: Path, task: str | None = None) -> Manifest:
    """Manifest of an MSD v1 / nnU-Net v2 folder (segmentation)."""
    if task not in (None, "segmentation"):
        raise InputError(f"MSD / nnU-Net folders hold segmentation masks, not a {task} task", path=source)
    meta = read_dataset_json(source)
    json_path = source / "dataset.json"
    labels, regions, ignore = parse_labels(meta["labels"], json_path)
    warnings: list[str] = []
    if "channel_names" in meta:  # nnU-Net v2
        dialect = "nnunet_v2"
        channels = [str(v) for _, v in sorted(meta["channel_names"].items(), key=lambda kv: int(kv[0]))]
        ending = str(meta.get("file_ending", ".nii.gz"))
        one_rgb_file = [c.upper() for c in channels] == ["R", "G", "B"]
        cases, suffixed = _v2_cases(source, meta, ending, len(channels), one_rgb_file), True
    else:  # MSD v1 (or nnU-Net v1)
        dialect = "msd_v1"
        modality = meta.get("modality") or {"0": "image"}
        channels = [str(v) for _, v in sorted(modality.items(), key=lambda kv: int(kv[0]))]
        ending = ".nii.gz"
        cases, suffixed = _v1_cases(source, meta)
    if not cases:
        raise InputError("dataset.json lists no training cases and imagesTr/ holds none", path=json_path)
    if "numTraining" in meta and int(meta["numTraining"]) != len(cases):
        warn(warnings, f"{json_path}: numTraining says {meta['numTraining']} but {len(cases)} cases were found")
    info = read_header(cases[0].images[0])
    modality = modality_map(channels)
    if [c.upper() for c in channels] == list(RGB_NAMES[:3]) or any(c.lower() == "rgb_to_0_1" for c in channels):
        modality = {str(i): "RGB" for i in range(len(channels))}
    extra = {"dialect": dialect, "warnings": warnings}
    if ignore is not None:
        extra["ignore_label"] = ignore
    if "regions_class_order" in meta:
        extra["regions_class_order"] = meta["regions_class_order"]
    return Manifest(name=str(meta.get("name") or source.name), task="segmentation", dims=info.ndim,
                    channels=channels, labels=labels, cases=cases, file_ending=ending,
                    strip_channel_suffix=suffixed, modality=modality, regions=regions, extra=extra)
