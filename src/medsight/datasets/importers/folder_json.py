"""``folder-json``: a folder of images, each with a same-stem JSON sidecar holding its label (ISIC archive).

The label is read at a dotted key (``label_key="meta.clinical.benign_malignant"``, the default when the
sidecars carry ISIC's ``meta.clinical``). An optional ``group_key`` (e.g. ``meta.clinical.patient_id``)
fills ``Case.group``. Class values as in ``folder-csv``: strings sorted and numbered 0..K-1.
``covariates`` (dotted keys separated by commas, e.g. ``meta.clinical.age_approx,meta.clinical.sex``) keeps
clinical values beside each image (:mod:`medsight.classification.covariates`); a sidecar without one has it
missing. Name no key that is derived from the label (ISIC's ``diagnosis`` or ``melanocytic``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medsight.datasets.importers.common import (channel_names_for, class_labels, is_missing_label, list_images,
                                                 modality_map, stem)
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "folder-json"
LOOKS_FOR = "image files each with a same-stem .json sidecar (ISIC: meta.clinical)"
ISIC_LABEL_KEY = "meta.clinical.benign_malignant"
_MISSING = object()


def _sidecar(image: Path) -> Path:
    return image.with_name(stem(image) + ".json")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the JSON sidecar ({e})", path=path) from None


def lookup(data: Any, dotted_key: str) -> Any:
    """``data['a']['b']`` for ``"a.b"``; a sentinel when a level is missing."""
    for part in dotted_key.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def detect(source: Path) -> bool:
    """True when SOURCE's images come with same-stem JSON files."""
    if not source.is_dir():
        return False
    images = list_images(source)
    return bool(images) and all(_sidecar(p).is_file() for p in images[:20])


def build(source: Path, task: str | None = None, label_key: str | None = None,
          group_key: str | None = None, covariates: str | None = None) -> Manifest:
    """Manifest of images labelled by JSON sidecars (classification)."""
    if task not in (None, "classification"):
        raise InputError(f"labels in JSON sidecars give a classification task, not {task}", path=source)
    images = list_images(source)
    if not images:
        raise InputError("the folder holds no image files", path=source)
    sidecars = [_sidecar(p) for p in images]
    for image, sidecar in zip(images, sidecars):
        if not sidecar.is_file():
            raise InputError(f"image has no JSON sidecar {sidecar.name}", path=image)
    first = _read_json(sidecars[0])
    if label_key is None:
        if lookup(first, ISIC_LABEL_KEY) is _MISSING:
            raise InputError("cannot tell which JSON key holds the label", path=sidecars[0],
                             fix="give --option label_key=KEY, e.g. label_key=meta.clinical.diagnosis")
        label_key = ISIC_LABEL_KEY
    from medsight.classification.covariates import parse_names, stored_rows

    covariate_keys = parse_names(covariates)
    if label_key in covariate_keys:
        raise InputError(f"covariate {label_key!r} is the label key: it would give the label away", path=source)
    raw, groups, raw_covariates = [], [], []
    for sidecar in sidecars:
        data = _read_json(sidecar)
        value = lookup(data, label_key)
        if value is _MISSING or value is None or is_missing_label(str(value)):
            raise InputError(f"has no label at {label_key!r}", path=sidecar,
                             fix="fix the file or give --option label_key=KEY")
        raw.append(str(value).strip())
        group = lookup(data, group_key) if group_key else _MISSING
        groups.append(None if group is _MISSING or group is None else str(group))
        raw_covariates.append({k: v for k in covariate_keys if (v := lookup(data, k)) is not _MISSING})
    covariate_rows, kinds = stored_rows(covariate_keys, raw_covariates, [str(p) for p in sidecars], str(source))
    value_of, labels = class_labels(raw)
    cases = [Case(id=stem(p), images=[str(p.resolve())], label=value_of[v], group=g, covariates=c)
             for p, v, g, c in zip(images, raw, groups, covariate_rows)]
    info = read_header(images[0])
    channels = channel_names_for(info.num_channels)
    return Manifest(name=source.name, task="classification", dims=info.ndim, channels=channels, labels=labels,
                    cases=cases, modality=modality_map(channels),
                    extra={"label_key": label_key, **({"covariates": kinds} if kinds else {})})
