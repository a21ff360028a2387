"""Helpers the importers share: listing image files, parsing CLI options, naming channels and classes."""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Iterable

from medsight.errors import InputError
from medsight.io import image_extension, image_stem

log = logging.getLogger("medsight.datasets")

#: Extensions of files that hold one image each (arrays in .npz/.npy are not single images).
IMAGE_FILE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg",
                         ".tif", ".tiff", ".bmp", ".gif", ".dcm")
MR_NAMES = ("MR", "MRI", "T1", "T2", "FLAIR", "ADC", "DWI", "PD", "T1C", "T1W", "T2W", "T1CE", "T1GD",
            "HBV", "SWI", "BOLD")
RGB_NAMES = ("R", "G", "B", "RGB")
MAX_LABEL_VALUES = 64


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is a single-image format."""
    return path.is_file() and not path.name.startswith(".") and image_extension(path) in IMAGE_FILE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def stem(path: str | Path) -> str:
    """File name without its image extension (``x.nii.gz`` -> ``x``)."""
    return image_stem(path)


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as an existing folder, else InputError naming what it should hold."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"{what} folder does not exist", path=folder)
    return folder.resolve()


def parse_int_map(value: str | dict | None, option: str) -> dict[str, int]:
    """Parse ``"0:1,255:0"`` (or a dict) into {raw value: label value} with string keys."""
    if value is None or value == "":
        return {}
    items = value.items() if isinstance(value, dict) else (
        part.split(":", 1) if ":" in part else (part, None) for part in str(value).split(",") if part.strip())
    out: dict[str, int] = {}
    for raw, target in items:
        try:
            out[str(int(float(str(raw).strip())))] = int(str(target).strip())
        except (TypeError, ValueError):
            raise InputError(f"cannot read {option} entry {raw}:{target}",
                             fix=f"write {option} as RAW:VALUE pairs, e.g. 0:1,255:0") from None
    return out


def parse_name_map(value: str | dict | None, option: str, sep: str = "=") -> dict[str, str]:
    """Parse ``"FLAIR=Flair*,T1c=T1c*"`` (or a dict) into an ordered {name: text} dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        if sep not in part:
            raise InputError(f"cannot read {option} entry {part!r}", fix=f"write {option} as NAME{sep}TEXT pairs")
        name, text = part.split(sep, 1)
        out[name.strip()] = text.strip()
    return out


def channel_names_for(num_channels: int) -> list[str]:
    """Default channel names: one grey channel, R/G/B for three, ``channel_k`` otherwise."""
    if num_channels == 1:
        return ["grey"]
    if num_channels == 3:
        return ["R", "G", "B"]
    return [f"channel_{k}" for k in range(num_channels)]


def modality_of(channel_name: str) -> str:
    """Normalisation family of a channel name: "CT", "RGB", "MR" or "other"."""
    name = channel_name.strip().upper()
    if name == "CT":
        return "CT"
    if name in RGB_NAMES:
        return "RGB"
    first = re.split(r"[^A-Z0-9]+", name)[0]
    return "MR" if name in MR_NAMES or first in MR_NAMES else "other"


def modality_map(channels: list[str]) -> dict[str, str]:
    """{channel index: modality} for a list of channel names."""
    return {str(i): modality_of(name) for i, name in enumerate(channels)}


def is_missing_label(text: str) -> bool:
    """True for a label cell that holds no class: empty, or NaN written as text (``nan``, as pandas writes it)."""
    try:
        return not text.strip() or math.isnan(float(text))
    except ValueError:
        return False


def class_labels(raw_values: Iterable[Any]) -> tuple[dict[Any, int], dict[str, str]]:
    """Class values and names from raw CSV/JSON values: ints kept, strings sorted and numbered 0..K-1."""
    raw = sorted({v for v in raw_values}, key=str)
    as_int = {}
    for v in raw:
        try:
            if float(str(v)) != int(float(str(v))):
                raise ValueError
            as_int[v] = int(float(str(v)))
        except (ValueError, OverflowError):
            as_int = None
            break
    if as_int is not None:
        return as_int, {str(i): f"class_{i}" for i in sorted(set(as_int.values()))}
    names = sorted({str(v) for v in raw})
    value_of_name = {n: i for i, n in enumerate(names)}
    return {v: value_of_name[str(v)] for v in raw}, {str(i): n for i, n in enumerate(names)}


def mask_label_mapping(value_counts: dict[int, int], where: str | Path | None = None
                       ) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """Default (label_mapping, labels, warnings) for masks holding ``value_counts`` {raw value: voxels}.

    {0, 1} and small label sets are kept; {0, 255} becomes {0, 1}; uint8 masks that are binary but
    anti-aliased (>= 99% of pixels at 0 or 255, e.g. resized) are thresholded at 128. More than
    ``MAX_LABEL_VALUES`` other values look like images, not masks: InputError.
    """
    values = sorted(value_counts)
    total = max(1, sum(value_counts.values()))
    if set(values) <= {0, 255} and 255 in values:
        return {"0": 0, "255": 1}, {"0": "background", "1": "foreground"}, []
    at_ends = value_counts.get(0, 0) + value_counts.get(255, 0)
    if len(values) > 2 and min(values) >= 0 and max(values) == 255 and at_ends >= 0.99 * total:
        note = (f"masks hold {len(values)} grey values but {100 * at_ends / total:.2f}% of pixels are 0 or 255: "
                "read as anti-aliased binary masks, thresholded at 128 (set --label-map to change)")
        return ({str(v): int(v >= 128) for v in range(256)}, {"0": "background", "1": "foreground"}, [note])
    if len(values) > MAX_LABEL_VALUES or min(values, default=0) < 0:
        raise InputError(f"the masks hold {len(values)} distinct values from {values[0]} to {values[-1]}: they look "
                         "like images, not label masks", path=where,
                         fix="check the mask folder, or give --label-map RAW:VALUE for every value")
    labels = {"0": "background"}
    labels.update({str(v): ("foreground" if values == [0, 1] or values == [1] else f"label_{v}")
                   for v in values if v != 0})
    return {}, labels, []


def labels_from_mapping(mapping: dict[str, int], names: dict[str, str] | None = None) -> dict[str, str]:
    """Label names for the values a user's --label-map produces (0 = background)."""
    values = sorted(set(mapping.values()) | {0})
    default = "foreground" if values == [0, 1] else None
    labels = {str(v): ("background" if v == 0 else default or f"label_{v}") for v in values}
    labels.update(names or {})
    return labels


def warn(warnings: list[str], message: str) -> None:
    """Log an import warning and keep it in ``warnings`` (it ends up in ``manifest.extra['warnings']``)."""
    log.warning(message)
    warnings.append(message)


def resolve_option_dir(source: Path, value: str | Path, what: str) -> Path:
    """A folder option: relative to SOURCE when it exists there, else as given."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and (source / candidate).is_dir():
        candidate = source / candidate
    return require_dir(candidate, what)


def child_dir(folder: Path, names: Iterable[str]) -> Path | None:
    """The first sub-folder of ``folder`` whose name (case-insensitive) is in ``names``, in that order."""
    children = {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
