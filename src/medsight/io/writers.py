"""``write_image``: write an ``Image`` by extension, atomically (temp file in the same folder, then rename)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from medsight.errors import InputError
from medsight.io import arrays, nifti, raster, sitk_io
from medsight.io.formats import image_extension
from medsight.io.image import Image
from medsight.tempfiles import replaced_on_success

_WRITERS: dict[str, Callable[[Image, Path], None]] = {
    ".nrrd": sitk_io.write_sitk, ".mha": sitk_io.write_sitk,
    ".png": raster.write_raster, ".tif": raster.write_raster, ".tiff": raster.write_raster,
    ".bmp": raster.write_raster, ".jpg": raster.write_raster, ".jpeg": raster.write_raster,
    ".gif": raster.write_raster, ".npy": arrays.write_npy, ".npz": arrays.write_npz,
}
WRITABLE_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".nhdr") + tuple(_WRITERS)


def write_image(image: Image, path: str | Path, reference: str | Path | None = None) -> Path:
    """Write ``image`` to ``path`` (format by extension), creating parent folders; returns the path.

    NIfTI keeps the RAS affine (qform/sform codes from ``reference`` when it is a NIfTI); NRRD and MetaImage
    keep the full geometry (``.mhd``/``.nhdr`` with their data file beside: ``case.zraw``, ``case.raw.gz``);
    PNG/TIFF/BMP/JPEG hold 2D grey or RGB integers; ``.npz`` keeps voxels and
    geometry, ``.npy`` voxels only. The file appears complete or not at all.

    Example:
        >>> write_image(Image(np.zeros((1, 8, 8), np.uint8)), "out/mask.png")  # doctest: +SKIP
        PosixPath('out/mask.png')
    """
    path = Path(path)
    ext = image_extension(path)
    if ext not in WRITABLE_EXTENSIONS:
        fix = f"use one of {' '.join(WRITABLE_EXTENSIONS)}"
        raise InputError(f"cannot write images as {ext or path.suffix or 'a file without extension'!r}",
                         path=path, fix=fix)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replaced_on_success(path, ext) as temporary:  # the extension kept: libraries pick the format by it
            if ext in (".nii.gz", ".nii"):
                nifti.write_nifti(image, temporary, reference)
            elif ext in sitk_io.DATA_FILE_FIELDS:
                sitk_io.write_sitk_detached(image, temporary, path)
            else:
                _WRITERS[ext](image, temporary)
    except InputError as err:  # name the file the caller asked for, not the temp file
        raise InputError(err.problem, path=path, fix=err.fix) from None
    return path
