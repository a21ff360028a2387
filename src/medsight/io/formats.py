"""Which library handles a file: extensions, the DICOM preamble and ``archive.npz::key::index`` refs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
ITK_EXTENSIONS = (".nrrd", ".nhdr", ".mha", ".mhd")
RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
ARRAY_EXTENSIONS = (".npy", ".npz")
DICOM_EXTENSIONS = (".dcm", ".dicom")
KNOWN_EXTENSIONS = NIFTI_EXTENSIONS + ITK_EXTENSIONS + RASTER_EXTENSIONS + ARRAY_EXTENSIONS + DICOM_EXTENSIONS
REF_SEPARATOR = "::"


def image_extension(path: str | Path) -> str:
    """The lower-case image extension of ``path`` (``.nii.gz`` counts as one), or '' when unknown."""
    name = Path(path).name.lower()
    for ext in KNOWN_EXTENSIONS:  # .nii.gz is tested before .nii and any single suffix
        if name.endswith(ext):
            return ext
    return ""


def image_stem(path: str | Path) -> str:
    """The file name without its image extension: ``scan_0003.nii.gz`` gives ``scan_0003``."""
    name = Path(path).name
    ext = image_extension(name)
    return name[: len(name) - len(ext)] if ext else Path(name).stem


def format_family(path: str | Path) -> str:
    """'nifti', 'itk', 'raster', 'array', 'dicom' or '' for a file path (the DICOM preamble is checked)."""
    ext = image_extension(path)
    for family, exts in (("nifti", NIFTI_EXTENSIONS), ("itk", ITK_EXTENSIONS), ("raster", RASTER_EXTENSIONS),
                         ("array", ARRAY_EXTENSIONS), ("dicom", DICOM_EXTENSIONS)):
        if ext in exts:
            return family
    return "dicom" if has_dicom_preamble(path) else ""


def lacks_spacing(ref: str | Path) -> bool:
    """True when ``ref`` is a file that stores no physical pixel size (a raster image, a plain array or an
    archive ref), so that it reads with a spacing of 1 per pixel; NIfTI, ITK formats and DICOM store one."""
    return is_array_ref(ref) or format_family(ref) in ("raster", "array")


def has_dicom_preamble(path: str | Path) -> bool:
    """True when the file carries the DICOM Part 10 marker 'DICM' after its 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: Path) -> bool:
    """A DICOM file: named ``.dcm``/``.dicom``, or carrying the DICM marker whatever its name."""
    return path.is_file() and (path.suffix.lower() in DICOM_EXTENSIONS or has_dicom_preamble(path))


@dataclass(frozen=True)
class ArrayRef:
    """A parsed ``archive.npz::key::index`` reference (key and index optional)."""

    path: Path
    key: str | None = None
    index: int | None = None


def is_array_ref(ref: str | Path) -> bool:
    """True when ``ref`` names one array (or one sample of an array) inside an archive."""
    return REF_SEPARATOR in str(ref)


def parse_array_ref(ref: str | Path) -> ArrayRef:
    """Split ``archive.npz::key::index`` into its parts; raises ValueError on a malformed ref."""
    parts = str(ref).split(REF_SEPARATOR)
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"expected 'archive.npz::key' or 'archive.npz::key::index', got {str(ref)!r}")
    key = parts[1] if len(parts) > 1 and parts[1] else None
    index = None
    if len(parts) == 3:
        try:
            index = int(parts[2])
        except ValueError:
            raise ValueError(f"sample index {parts[2]!r} in {str(ref)!r} is not an integer") from None
    return ArrayRef(Path(parts[0]), key, index)
