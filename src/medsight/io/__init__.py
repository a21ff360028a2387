"""Reading and writing medical images with their geometry: one ``Image`` type for every format.

Example:
    >>> from medsight.io import read_image, write_image  # doctest: +SKIP
    >>> image = read_image("scan.nii.gz")                 # doctest: +SKIP
    >>> write_image(image, "copy.nrrd")                   # doctest: +SKIP
"""
from __future__ import annotations

from medsight.io.dicom import DicomSeries, list_dicom_series, read_series
from medsight.io.formats import image_extension, image_stem, is_array_ref, parse_array_ref
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.readers import read_header, read_image
from medsight.io.writers import WRITABLE_EXTENSIONS, write_image

__all__ = [
    "Image", "ImageInfo", "DicomSeries", "read_image", "read_header", "write_image", "list_dicom_series",
    "read_series", "image_extension", "image_stem", "is_array_ref", "parse_array_ref", "WRITABLE_EXTENSIONS",
]
