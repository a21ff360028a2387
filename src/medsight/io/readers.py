"""``read_image`` and ``read_header``: one entry point for every format, chosen by extension.

NIfTI goes through nibabel, NRRD/MetaImage through SimpleITK, 2D rasters through PIL, DICOM files and
folders through SimpleITK/GDCM, numpy files through numpy (see each module for its axis rules).
Every failure is an ``InputError`` naming the file and the problem in one line.
"""
from __future__ import annotations

from pathlib import Path

from medsight.errors import InputError
from medsight.io import arrays, dicom, nifti, raster, sitk_io
from medsight.io.formats import KNOWN_EXTENSIONS, ArrayRef, format_family, is_array_ref, parse_array_ref
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.validation import check_geometry, normalise_voxels, refuse_non_finite

_READERS = {"nifti": nifti.read_nifti, "itk": sitk_io.read_sitk, "raster": raster.read_raster,
            "dicom": dicom.read_dicom_file}
_INFO_READERS = {"nifti": nifti.read_nifti_info, "itk": sitk_io.read_sitk_info,
                 "raster": raster.read_raster_info, "dicom": dicom.read_dicom_file_info}


def _existing(ref: str | Path) -> Path:
    path = Path(ref)
    if not path.exists():
        raise InputError("file not found", path=path)
    return path


def _family(path: Path) -> str:
    family = format_family(path)
    if not family:
        known = " ".join(sorted(set(KNOWN_EXTENSIONS)))
        raise InputError(f"unknown image format {''.join(path.suffixes[-2:]) or '(no extension)'!r}", path=path,
                         fix=f"use one of {known}, a DICOM file or a DICOM folder")
    return family


def _array_ref(ref: str | Path) -> ArrayRef:
    try:
        return parse_array_ref(ref)
    except ValueError as err:
        raise InputError(str(err), path=str(ref).split("::")[0]) from None


def read_image(ref: str | Path, check_finite: bool = True) -> Image:
    """Read an image file, DICOM folder or ``archive.npz::key::index`` ref into an ``Image``.

    Floats come back as float32, integer files keep their integer dtype (labels). With ``check_finite``
    a float image holding NaN or Inf voxels is refused.

    Example:
        >>> img = read_image("case_0001.nii.gz")  # doctest: +SKIP
        >>> img.array.shape, img.spacing          # doctest: +SKIP
        ((1, 160, 192, 224), (1.0, 1.0, 1.0))
    """
    if is_array_ref(ref):
        image = arrays.read_array_file(_array_ref(ref))
    else:
        path = _existing(ref)
        if path.is_dir():
            image = dicom.read_series(path)
        else:
            family = _family(path)
            image = arrays.read_array_file(ArrayRef(path)) if family == "array" else _READERS[family](path)
    image.array = normalise_voxels(image.array)
    check_geometry(image, ref)
    if check_finite:
        refuse_non_finite(image, ref)
    return image


def read_header(ref: str | Path) -> ImageInfo:
    """Shape, channels, geometry and voxel dtype of an image without loading its voxels where possible."""
    if is_array_ref(ref):
        return arrays.read_array_info(_array_ref(ref))
    path = _existing(ref)
    if path.is_dir():
        return dicom.read_series_info(path)
    family = _family(path)
    if family == "array":
        return arrays.read_array_info(ArrayRef(path))
    return _INFO_READERS[family](path)
