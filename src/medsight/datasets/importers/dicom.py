"""``dicom``: a folder tree of DICOM series -> one case per series folder (read by ``medsight.io``).

Each folder that holds DICOM files must hold one series (its reference is the folder, which
``read_image`` reads as a 3D series); the case id is the folder's path below SOURCE with ``/`` -> ``_``,
and ``Case.group`` the PatientID, so folds keep a patient's series together. Labels: with ``csv`` a
classification task, the CSV keyed by case id, folder name, SeriesInstanceUID or PatientID (column
``case|series|series_uid|seriesinstanceuid|folder|patient|patient_id|patientid``) with a label column as
in ``folder-csv``. Without a CSV the cases are unlabeled (for ``predict``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pydicom

from medsight.datasets.importers.common import channel_names_for, class_labels, modality_of, warn
from medsight.datasets.importers.folder_csv import LABEL_COLUMNS, pick_column, read_csv_rows
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import list_dicom_series, read_header
from medsight.io.formats import is_dicom_file

FORMAT = "dicom"
LOOKS_FOR = "DICOM files (.dcm or the DICM preamble) in one folder per series"
KEY_COLUMNS = ("case", "series", "series_uid", "seriesinstanceuid", "folder", "patient", "patient_id", "patientid")
MAX_SCANNED_FILES = 50


def dicom_folders(source: Path) -> list[Path]:
    """Folders under SOURCE (itself included) that hold DICOM files, sorted."""
    found = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(is_dicom_file(Path(root) / f) for f in sorted(files) if not f.startswith(".")):
            found.append(Path(root))
    return sorted(found)


def detect(source: Path) -> bool:
    """True when a DICOM file is among the first files under SOURCE."""
    if not source.is_dir():
        return False
    seen = 0
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_dicom_file(Path(root) / name):
                return True
            seen += 1
            if seen >= MAX_SCANNED_FILES:
                return False
    return False


def _labels_by_key(csv_path: Path, label_column: str | None) -> tuple[dict[str, str], str]:
    header, rows = read_csv_rows(csv_path)
    key_col = pick_column(header, None, KEY_COLUMNS, "case", csv_path)
    label_col = pick_column(header, label_column, LABEL_COLUMNS, "label", csv_path, option="label_column")
    return {(r[key_col] or "").strip(): (r[label_col] or "").strip() for r in rows}, key_col


def build(source: Path, task: str | None = None, csv: str | None = None,
          label_column: str | None = None) -> Manifest:
    """Manifest of a folder of DICOM series (classification with a CSV, else unlabeled)."""
    if task not in (None, "classification"):
        raise InputError(f"DICOM import supports classification labels from a CSV, not {task}", path=source,
                         fix="convert masks/boxes to NIfTI and use --format cases or msd")
    folders = dicom_folders(source)
    if not folders:
        raise InputError("no DICOM files found", path=source)
    cases, warnings, tags = [], [], {}
    for folder in folders:
        series = list_dicom_series(folder)
        if len(series) != 1:
            raise InputError(f"holds {len(series)} DICOM series; a case needs one series per folder"
                             + (": " + "; ".join(s.summary() for s in series) if series else ""), path=folder,
                             fix="give each series its own folder")
        header = pydicom.dcmread(series[0].files[0], stop_before_pixels=True,
                                 specific_tags=["PatientID", "SeriesInstanceUID", "Modality"])
        rel = folder.relative_to(source).as_posix()
        case_id = source.name if rel == "." else rel.replace("/", "_")
        tags[case_id] = {"folder": folder.name, "series": str(header.get("SeriesInstanceUID", "")),
                         "patient": str(header.get("PatientID", "") or ""),
                         "modality": str(header.get("Modality", "") or "other")}
        cases.append(Case(id=case_id, images=[str(folder.resolve())], group=tags[case_id]["patient"] or None))
    labels: dict[str, str] = {}
    extra: dict = {"warnings": warnings}
    if csv:
        csv_path = Path(csv).expanduser().resolve()
        if not csv_path.is_file():
            raise InputError("CSV file does not exist", path=csv_path)
        by_key, key_col = _labels_by_key(csv_path, label_column)
        raw = []
        for case in cases:
            keys = (case.id, tags[case.id]["folder"], tags[case.id]["series"], tags[case.id]["patient"])
            value = next((by_key[k] for k in keys if k and by_key.get(k)), None)
            if value is None:
                raise InputError(f"has no label for series {case.id} (looked up {', '.join(k for k in keys if k)} "
                                 f"in column {key_col!r})", path=csv_path)
            raw.append(value)
        value_of, labels = class_labels(raw)
        for case, value in zip(cases, raw):
            case.label = value_of[value]
        extra["csv"] = str(csv_path)
    else:
        warn(warnings, f"{source}: no --csv of labels: the series are imported unlabeled (for predict)")
    info = read_header(cases[0].images[0])
    first_modality = tags[cases[0].id]["modality"]
    channels = channel_names_for(info.num_channels) if info.num_channels != 1 else [first_modality]
    return Manifest(name=source.name, task="classification", dims=info.ndim, channels=channels, labels=labels,
                    cases=cases, modality={"0": modality_of(first_modality)} if info.num_channels == 1 else {},
                    extra=extra)
