"""NIfTI through nibabel: voxels in nibabel's (i, j, k) order, the RAS affine turned into LPS geometry.

A 4th axis (MSD v1 keeps modalities there) becomes the channels; so does the 5th of a vector image
(i, j, k, 1, c). 2D NIfTI files give 2D images whose geometry is the in-plane part of the affine.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from medsight.errors import InputError
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.sitk_io import read_sitk
from medsight.io.validation import output_dtype

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
DEFAULT_XFORM_CODE = 1  # NIFTI_XFORM_SCANNER_ANAT, what ITK writes for both qform and sform
_HEADER_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)


def _load(path: Path) -> nib.Nifti1Image | None:
    """The nibabel image (lazy voxels), or None when nibabel does not understand the header."""
    try:
        return nib.load(str(path), mmap=False)
    except _HEADER_ERRORS:
        return None


def _size_text(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e5 else f"{num_bytes / 1e3:.1f} kB"


def _channels_last_to_first(data: np.ndarray, path: Path) -> np.ndarray:
    """(i, j[, k]) -> (1, ...); (i, j, k, c) and (i, j, k, 1, c) -> (c, i, j, k)."""
    if data.ndim in (2, 3):
        return data[None]
    if data.ndim == 4:
        return np.moveaxis(data, -1, 0)
    if data.ndim == 5 and data.shape[3] == 1:
        return np.moveaxis(data[:, :, :, 0, :], -1, 0)
    raise InputError(f"a NIfTI with shape {data.shape} is not a 2D/3D image with channels", path=path)


def _geometry_2d(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    """Spacing, origin and direction of a 2D NIfTI: the in-plane part of its LPS affine."""
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :2], axis=0)
    spacing[spacing == 0] = 1.0
    return tuple(spacing), tuple(lps[:2, 3]), lps[:2, :2] / spacing


def _affine_2d(image: Image) -> np.ndarray:
    """The RAS 4x4 affine that stores a 2D image's geometry in the x-y plane."""
    lps = np.eye(4)
    lps[:2, :2] = np.asarray(image.direction) @ np.diag(image.spacing)
    lps[:2, 3] = image.origin
    return RAS_TO_LPS @ lps


def _is_scaled(header) -> bool:
    slope, inter = header.get_slope_inter()
    return (slope is not None and slope != 1.0) or (inter is not None and inter != 0.0)


def read_nifti(path: Path) -> Image:
    """Read a .nii / .nii.gz file; SimpleITK is the fallback when nibabel rejects the header."""
    nii = _load(path)
    if nii is None:
        try:
            return read_sitk(path, rows_first_2d=False)
        except InputError:
            raise InputError("not a readable NIfTI file (header not understood by nibabel or SimpleITK)",
                             path=path) from None
    try:
        data = np.asanyarray(nii.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        expected = int(np.prod(nii.shape)) * nii.get_data_dtype().itemsize
        ends_early = isinstance(err, EOFError) or "Expected" in str(err) or "mmap length" in str(err)
        detail = "file ends early" if ends_early else " ".join(str(err).split())
        raise InputError(f"truncated or corrupt NIfTI (expected {_size_text(expected)} of voxels, {detail})",
                         path=path) from None
    array = _channels_last_to_first(np.asarray(data), path)
    if array.ndim == 3:
        spacing, origin, direction = _geometry_2d(nii.affine)
        return Image(array, spacing=spacing, origin=origin, direction=direction)
    return Image.from_affine(array, nii.affine)


def read_nifti_info(path: Path) -> ImageInfo:
    """Geometry and voxel type from the NIfTI header alone."""
    nii = _load(path)
    if nii is None:
        raise InputError("not a readable NIfTI header", path=path)
    shape = tuple(int(s) for s in nii.shape)
    if len(shape) == 2:
        spatial, channels = shape, 1
        spacing, origin, direction = _geometry_2d(nii.affine)
    elif len(shape) in (3, 4) or (len(shape) == 5 and shape[3] == 1):
        spatial, channels = shape[:3], (shape[-1] if len(shape) > 3 else 1)
        geometry = Image.from_affine(np.zeros((1, 1, 1, 1), np.uint8), nii.affine)
        spacing, origin, direction = geometry.spacing, geometry.origin, geometry.direction
    else:
        raise InputError(f"a NIfTI with shape {shape} is not a 2D/3D image with channels", path=path)
    dtype = np.dtype(np.float32) if _is_scaled(nii.header) else output_dtype(nii.get_data_dtype())
    return ImageInfo(spatial, channels, tuple(spacing), tuple(origin), np.asarray(direction), dtype)


def _storable(data: np.ndarray, path: Path) -> np.ndarray:
    """Voxels in a dtype every NIfTI reader accepts (int64 is narrowed to int32 when it fits)."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        info = np.iinfo(np.int32)
        if low < info.min or high > info.max:
            raise InputError(f"values {low}..{high} do not fit the int32 that NIfTI tools read", path=path)
        return data.astype(np.int32)
    return data


def _xform_codes(reference: str | Path | None) -> tuple[int, int]:
    """(qform_code, sform_code) of a reference NIfTI, or the defaults."""
    if reference is None or Path(reference).is_dir() or not str(reference).lower().endswith((".nii", ".nii.gz")):
        return DEFAULT_XFORM_CODE, DEFAULT_XFORM_CODE
    nii = _load(Path(reference))
    if nii is None:
        raise InputError("reference NIfTI header is unreadable", path=reference)
    codes = int(nii.header["qform_code"]), int(nii.header["sform_code"])
    return codes if any(codes) else (DEFAULT_XFORM_CODE, DEFAULT_XFORM_CODE)


def write_nifti(image: Image, path: Path, reference: str | Path | None = None) -> None:
    """Write ``image`` as NIfTI with its RAS affine in both qform and sform (codes from ``reference``)."""
    if image.ndim == 3:
        data = image.array[0] if image.num_channels == 1 else np.moveaxis(image.array, 0, -1)
        affine = image.affine
    elif image.num_channels == 1:
        data, affine = image.array[0], _affine_2d(image)
    else:
        raise InputError(f"a 2D NIfTI holds one channel, this image has {image.num_channels}", path=path,
                         fix="write .png/.tif for RGB, .npz, or one file per channel")
    nii = nib.Nifti1Image(_storable(np.asarray(data), path), affine)
    qform_code, sform_code = _xform_codes(reference)
    nii.set_qform(affine, code=qform_code)
    nii.set_sform(affine, code=sform_code)
    nii.header.set_xyzt_units("mm", "sec")
    nib.save(nii, str(path))
