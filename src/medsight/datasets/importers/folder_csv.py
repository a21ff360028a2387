"""``folder-csv``: image files plus a CSV of class labels (classification).

Columns are found by name (case-insensitive) unless given: image ``image|file|filename|path|id|image_id|
image_name|name``, label ``label|class|target|diagnosis|y``, optional group ``group|patient|patient_id|
subject|subject_id``. A file cell may be a path relative to the image folder, a file name, or a name
without extension. Class values: integer labels are kept, other values are sorted and numbered 0..K-1
(their names kept as class names). ``covariates`` (column names separated by commas, e.g.
``age,sex,site:categorical``) keeps clinical values beside each image (:mod:`medsight.classification.covariates`);
an empty, ``nan`` or ``NA`` cell is missing.
"""
from __future__ import annotations

import csv
from pathlib import Path

from medsight.datasets.importers.common import (channel_names_for, class_labels, is_image_file, is_missing_label,
                                                 modality_map, resolve_option_dir, stem)
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header

FORMAT = "folder-csv"
LOOKS_FOR = "image files with a CSV of labels (columns image/file/filename/path/id and label/class/target)"
IMAGE_COLUMNS = ("image", "file", "filename", "file_name", "path", "id", "image_id", "image_name", "name")
LABEL_COLUMNS = ("label", "class", "target", "diagnosis", "y")
GROUP_COLUMNS = ("group", "patient", "patient_id", "patientid", "subject", "subject_id")
MAX_INDEXED_FILES = 200_000


def _csv_files(source: Path) -> list[Path]:
    return sorted(p for p in source.glob("*.csv") if p.is_file() and not p.name.startswith("."))


def detect(source: Path) -> bool:
    """True when SOURCE is a CSV, or a folder holding a CSV with an image and a label column."""
    for path in ([source] if source.is_file() else _csv_files(source) if source.is_dir() else []):
        if path.suffix.lower() != ".csv":
            continue
        header = read_csv_rows(path)[0]
        if _pick(header, IMAGE_COLUMNS) and _pick(header, LABEL_COLUMNS):
            return True
    return False


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows as dicts) of a CSV file; InputError when unreadable."""
    header, numbered_rows = read_numbered_csv_rows(path)
    return header, [row for _, row in numbered_rows]


def read_numbered_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number in the file, row as dict)]) of a CSV file (blank lines skipped); InputError when
    unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            numbered_rows = [(reader.line_num, row) for row in reader]
            return list(reader.fieldnames or []), numbered_rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the CSV ({e})", path=path) from None


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def pick_column(header: list[str], given: str | None, names: tuple[str, ...], what: str, path: Path,
                required: bool = True, option: str | None = None) -> str | None:
    """The column ``given`` (checked), else the first of ``names`` in the header (case-insensitive);
    ``option`` is the importer option that names the column, for the message when none is found."""
    if given:
        if given not in header:
            raise InputError(f"has no column {given!r} (columns: {', '.join(header)})", path=path)
        return given
    found = _pick(header, names)
    if found is None and required:
        raise InputError(f"found no {what} column among {', '.join(header)}", path=path,
                         fix=f"name the column {'|'.join(names)}"
                         + (f" or give --option {option}=COLUMN" if option else ""))
    return found


def find_csv(source: Path, csv_option: str | None) -> Path:
    """The labels CSV: the --csv option, SOURCE itself, or the one CSV in SOURCE."""
    if csv_option:
        path = Path(csv_option).expanduser()
        path = source / path if not path.is_absolute() and (source / path).is_file() else path
        if not path.is_file():
            raise InputError("CSV file does not exist", path=path)
        return path.resolve()
    if source.is_file():
        return source
    found = [p for p in _csv_files(source) if detect(p)] or _csv_files(source)
    if len(found) != 1:
        raise InputError("no CSV of labels here" if not found else
                         f"several CSV files ({', '.join(p.name for p in found)})", path=source,
                         fix="name the labels file with --csv")
    return found[0].resolve()


class FileIndex:
    """Image files under a folder, found by relative path, by name or by name without extension."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_key: dict[str, Path] = {}
        for n, path in enumerate(sorted(folder.rglob("*"))):
            if n > MAX_INDEXED_FILES:
                break
            if is_image_file(path):
                rel = path.relative_to(folder).as_posix()
                for key in (rel, path.name, stem(path), rel[: len(rel) - len(path.name)] + stem(path)):
                    self.by_key.setdefault(key, path)

    def find(self, cell: str) -> Path | None:
        """The image a CSV cell names, or None."""
        cell = cell.strip().replace("\\", "/")
        direct = Path(cell).expanduser()
        if direct.is_absolute() and direct.is_file():
            return direct
        return self.by_key.get(cell) or self.by_key.get(cell.lstrip("./"))


def _check_unique_cases(files: list[Path], line_numbers: list[int], csv_path: Path) -> None:
    """InputError naming the CSV lines when two rows give the same case id (the image's name without extension)."""
    first_row_of: dict[str, tuple[int, Path]] = {}
    for line, path in zip(line_numbers, files):
        case_id = stem(path)
        if case_id in first_row_of:
            first_line, first_path = first_row_of[case_id]
            named = (f"image {path.name!r}" if path == first_path else
                     f"images {first_path} and {path}, which both give case id {case_id!r}")
            raise InputError(f"lines {first_line} and {line} both name {named}", path=csv_path,
                             fix="keep one row per image")
        first_row_of[case_id] = (line, path)


def build(source: Path, task: str | None = None, csv: str | None = None, images_dir: str | None = None,
          image_column: str | None = None, label_column: str | None = None,
          group_column: str | None = None, covariates: str | None = None) -> Manifest:
    """Manifest of image files labelled by a CSV (classification)."""
    if task not in (None, "classification"):
        raise InputError(f"a CSV of labels gives a classification task, not {task}", path=source)
    csv_path = find_csv(source, csv)
    folder = resolve_option_dir(source if source.is_dir() else source.parent, images_dir, "image") \
        if images_dir else (source if source.is_dir() else csv_path.parent)
    header, numbered_rows = read_numbered_csv_rows(csv_path)
    line_numbers, rows = [n for n, _ in numbered_rows], [row for _, row in numbered_rows]
    if not rows:
        raise InputError("the CSV has no rows", path=csv_path)
    image_col = pick_column(header, image_column, IMAGE_COLUMNS, "image", csv_path, option="image_column")
    label_col = pick_column(header, label_column, LABEL_COLUMNS, "label", csv_path, option="label_column")
    group_col = pick_column(header, group_column, GROUP_COLUMNS, "group", csv_path, required=False)
    from medsight.classification.covariates import parse_names, stored_rows

    covariate_cols = parse_names(covariates)
    for name in covariate_cols:  # names, each with its declared kind or None
        if name not in header:
            raise InputError(f"has no column {name!r} (--option covariates=)", path=csv_path,
                             fix=f"columns are {', '.join(header)}")
        if name in (label_col, image_col):
            raise InputError(f"covariate {name!r} is the {'label' if name == label_col else 'image'} column",
                             path=csv_path, fix="name other columns")
    index = FileIndex(folder)
    files, missing = [], []
    for row in rows:
        found = index.find(row[image_col] or "")
        (files.append(found) if found else missing.append(row[image_col]))
    if missing:
        raise InputError(f"names {len(missing)} image(s) that do not exist in {folder}, first {missing[0]!r}",
                         path=csv_path, fix="fix the CSV or point --images-dir at the images")
    _check_unique_cases(files, line_numbers, csv_path)
    raw = []
    for line, row in zip(line_numbers, rows):
        value = (row[label_col] or "").strip()
        if is_missing_label(value):
            problem = (f"line {line} holds {value!r} in column {label_col!r}: a missing value, not a class" if value
                       else f"line {line} has no label in column {label_col!r}")
            raise InputError(problem, path=csv_path, fix="give every row a class, or leave the row out")
        raw.append(value)
    value_of, labels = class_labels(raw)
    covariate_rows, kinds = stored_rows(covariate_cols, [{n: row[n] for n in covariate_cols} for row in rows],
                                        [f"{csv_path} line {line}" for line in line_numbers], str(csv_path))
    cases = [Case(id=stem(path), images=[str(path.resolve())], label=value_of[value],
                  group=(row[group_col].strip() or None) if group_col else None, covariates=covariate)
             for path, value, row, covariate in zip(files, raw, rows, covariate_rows)]
    info = read_header(files[0])
    channels = channel_names_for(info.num_channels)
    return Manifest(name=folder.name, task="classification", dims=info.ndim, channels=channels, labels=labels,
                    cases=cases, modality=modality_map(channels),
                    extra={"csv": str(csv_path), "label_column": label_col, "image_column": image_col,
                           **({"covariates": kinds} if kinds else {})})
