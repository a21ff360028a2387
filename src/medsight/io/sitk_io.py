"""SimpleITK at the boundary: NRRD / MetaImage files, and the conversion to and from ``Image``.

SimpleITK indexes arrays (z, y, x). 3D images are transposed to (x, y, z), the file's own voxel order
(the order nibabel gives). 2D images keep numpy's (rows, columns) = (y, x); their spacing, origin and
direction are reversed to match, so geometry stays expressed in the array's axis order.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import InputError
from medsight.io.formats import image_extension
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.validation import output_dtype

if TYPE_CHECKING:  # SimpleITK loads in 0.2 s: only the functions that touch a file import it
    import SimpleITK as sitk

FORMAT_NAMES = {".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage", ".mhd": "MetaImage",
                ".nii": "NIfTI", ".nii.gz": "NIfTI", ".dcm": "DICOM"}


def itk_error_summary(error: Exception, path: str | Path | None = None) -> str:
    """The informative part of a multi-line ITK exception message, without the file's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ERROR" in line), len(lines) - 1)
    if start < 0:
        return type(error).__name__
    head = lines[start].split("):", 1)[-1].split("ERROR:", 1)[-1].strip()
    details = [line for line in lines[start + 1:]
               if not line.startswith("Reason:") and not line.rstrip().endswith(("trouble", ":"))
               and "trouble reading" not in line]
    text = re.sub(r"^\[\w+\] \w+: ", "", details[-1]) if details else head
    if path is not None:
        text = text.replace(str(path), "").replace(Path(path).name, "")
    text = text.replace(" for reading.", "").replace('""', "")
    return " ".join(text.split()).strip(" :.") or type(error).__name__


def _reverse_2d(spacing, origin, direction: np.ndarray):
    """Geometry of a 2D sitk image (x, y) expressed in (rows, columns) = (y, x) order, and back."""
    return tuple(spacing)[::-1], tuple(origin)[::-1], np.asarray(direction)[::-1, ::-1].copy()


def image_from_sitk(img: sitk.Image, rows_first_2d: bool = True) -> Image:
    """Convert a SimpleITK image to an ``Image`` (vector/complex pixels and a 4th axis become channels).

    ``rows_first_2d=False`` transposes 2D images to (x, y) as nibabel does for 2D NIfTI.
    """
    import SimpleITK as sitk

    dim = img.GetDimension()
    if dim not in (2, 3, 4):
        raise ValueError(f"{dim}D images are not supported")
    array = sitk.GetArrayFromImage(img)  # (t?, z?, y, x, components?)
    spatial_dims = min(dim, 3)
    if img.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)
        names: list[str] = []
    elif np.iscomplexobj(array):
        array = np.stack([array.real, array.imag])
        names = ["real", "imag"]
    elif dim == 4:
        names = []  # (t, z, y, x): the 4th axis is already in front
    else:
        array = array[None]
        names = []
    if dim == 4 and array.ndim == 5:  # vector pixels on a 4D grid: fold time into channels
        array = array.reshape((-1,) + array.shape[2:])
    spacing = tuple(img.GetSpacing())[:spatial_dims]
    origin = tuple(img.GetOrigin())[:spatial_dims]
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)[:spatial_dims, :spatial_dims]
    if spatial_dims == 2 and rows_first_2d:
        spacing, origin, direction = _reverse_2d(spacing, origin, direction)
    else:
        array = np.transpose(array, (0,) + tuple(range(array.ndim - 1, 0, -1)))
    array = np.ascontiguousarray(array)
    return Image(array, spacing=spacing, origin=origin, direction=direction, channel_names=names)


def image_to_sitk(image: Image, rows_first_2d: bool = True) -> sitk.Image:
    """Convert an ``Image`` to SimpleITK (several channels become vector pixels)."""
    import SimpleITK as sitk

    array = image.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    spacing, origin, direction = image.spacing, image.origin, np.asarray(image.direction)
    if image.ndim == 2 and rows_first_2d:
        spacing, origin, direction = _reverse_2d(spacing, origin, direction)
    else:
        array = np.transpose(array, (0,) + tuple(range(array.ndim - 1, 0, -1)))
    if image.num_channels == 1:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array[0]))
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(array, 0, -1)), isVector=True)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(d) for d in direction.ravel()])
    return img


def read_sitk(path: Path, rows_first_2d: bool = True, image_io: str = "") -> Image:
    """Read any SimpleITK-readable file into an ``Image``; failures become one-line InputErrors."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if image_io:
        reader.SetImageIO(image_io)
    try:
        img = reader.Execute()
    except RuntimeError as err:
        kind = FORMAT_NAMES.get(image_extension(path), "image")
        raise InputError(f"truncated or corrupt {kind} file ({itk_error_summary(err, path)})", path=path) from None
    try:
        return image_from_sitk(img, rows_first_2d)
    except ValueError as err:
        raise InputError(str(err), path=path) from None


def read_sitk_info(path: Path, rows_first_2d: bool = True, image_io: str = "") -> ImageInfo:
    """Geometry and voxel type from the header only (ImageFileReader.ReadImageInformation)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if image_io:
        reader.SetImageIO(image_io)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        kind = FORMAT_NAMES.get(image_extension(path), "image")
        raise InputError(f"unreadable {kind} header ({itk_error_summary(err, path)})", path=path) from None
    dim = reader.GetDimension()
    if dim not in (2, 3, 4):
        raise InputError(f"{dim}D images are not supported", path=path)
    spatial_dims = min(dim, 3)
    size = tuple(reader.GetSize())
    components = reader.GetNumberOfComponents()
    probe = sitk.Image([1] * dim, reader.GetPixelID(), components) if components > 1 else \
        sitk.Image([1] * dim, reader.GetPixelID())
    file_dtype = sitk.GetArrayViewFromImage(probe).dtype
    channels = components * (2 if file_dtype.kind == "c" else 1) * (size[3] if dim == 4 else 1)
    spacing = tuple(reader.GetSpacing())[:spatial_dims]
    origin = tuple(reader.GetOrigin())[:spatial_dims]
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:spatial_dims, :spatial_dims]
    shape = size[:spatial_dims]
    if spatial_dims == 2 and rows_first_2d:
        spacing, origin, direction = _reverse_2d(spacing, origin, direction)
        shape = shape[::-1]
    return ImageInfo(tuple(int(s) for s in shape), int(channels), tuple(float(s) for s in spacing),
                     tuple(float(o) for o in origin), direction, output_dtype(file_dtype))


def write_sitk(image: Image, path: Path) -> None:
    """Write NRRD or MetaImage (.mha) with full geometry, gzip-compressed."""
    import SimpleITK as sitk

    sitk.WriteImage(image_to_sitk(image), str(path), useCompression=True)


#: detached-header formats: the header field that names the data file, and what separates it from its value
DATA_FILE_FIELDS = {".mhd": ("ElementDataFile", "="), ".nhdr": ("data file", ":")}


def write_sitk_detached(image: Image, header: Path, final: Path) -> None:
    """Write a detached-header image (MetaImage ``.mhd``, NRRD ``.nhdr``) whose header is ``header`` for now
    and ``final`` once the caller renames it: the data file is written beside ``header`` under its temporary
    name, renamed to ``final``'s name with the data file's own extension (``case.zraw``, ``case.raw.gz``), and
    the header made to name it. The header is renamed last, so a complete header names complete data."""
    import os

    import SimpleITK as sitk

    ext = ".mhd" if header.name.endswith(".mhd") else ".nhdr"
    field, separator = DATA_FILE_FIELDS[ext]
    sitk.WriteImage(image_to_sitk(image), str(header), useCompression=True)
    lines = header.read_text(encoding="latin-1").splitlines()
    at = next(i for i, line in enumerate(lines) if line.split(separator, 1)[0].strip() == field)
    written = lines[at].split(separator, 1)[1].strip()
    data = header.parent / written
    try:
        suffix = written[len(header.name) - len(ext):]  # what the library put after the header's stem
        target = final.with_name(final.name[: len(final.name) - len(ext)] + suffix)
        os.replace(data, target)
    finally:
        data.unlink(missing_ok=True)
    lines[at] = f"{field} = {target.name}" if separator == "=" else f"{field}: {target.name}"
    header.write_text("\n".join(lines) + "\n", encoding="latin-1")

