"""2D raster files through PIL (PNG, JPEG, TIFF, BMP, GIF): arrays in (rows, columns) order as PIL gives.

Grey gives one channel, RGB three (R, G, B); alpha is dropped. A palette whose used entries are grey
gives those grey values (DRIVE masks: 0/255); a palette of a few colours is a label map and gives its
indices (Pascal VOC masks); a many-colour palette gives RGB. 16-bit grey is kept as uint16.
Multi-frame files (animated GIF, TIFF stacks) give their first frame. Spacing is 1 pixel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from medsight.errors import InputError
from medsight.io.formats import image_extension
from medsight.io.image import Image
from medsight.io.info import ImageInfo

RGB_NAMES = ["R", "G", "B"]
MAX_LABEL_MAP_COLOURS = 64  # a colour palette with at most this many used entries is read as label indices
_FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
                 ".gif": "GIF"}
_GREY_MODES = {"L": np.uint8, "I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16,
               "I": np.int32, "F": np.float32}
_READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, EOFError)


def _palette_array(pil: PILImage.Image) -> tuple[np.ndarray, list[str]]:
    """Grey values, label indices or RGB for a palette image (see the module docstring)."""
    indices = np.asarray(pil)
    indices = indices[..., 0] if indices.ndim == 3 else indices  # PA: drop the alpha band
    palette = np.asarray(pil.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    used = np.unique(indices)
    if used.size and used.max() >= len(palette):
        palette = np.concatenate([palette, np.zeros((int(used.max()) + 1 - len(palette), 3), np.uint8)])
    colours = palette[used]
    if np.all(colours == colours[:, :1]):
        return palette[:, 0][indices][None], ["0"]
    if used.size <= MAX_LABEL_MAP_COLOURS:
        return indices.astype(np.uint8)[None], ["0"]
    return np.moveaxis(palette[indices], -1, 0), RGB_NAMES


def _pil_to_array(pil: PILImage.Image) -> tuple[np.ndarray, list[str]]:
    """Channel-first array and channel names for a decoded PIL image."""
    mode = pil.mode
    if mode in ("P", "PA"):
        return _palette_array(pil)
    if mode == "1":
        return np.asarray(pil.convert("L"))[None], ["0"]
    if mode in ("LA", "La"):
        return np.asarray(pil.getchannel("L"))[None], ["0"]
    if mode in _GREY_MODES:
        return np.asarray(pil).astype(_GREY_MODES[mode], copy=False)[None], ["0"]
    rgb = pil if mode == "RGB" else pil.convert("RGB")
    return np.moveaxis(np.asarray(rgb), -1, 0), RGB_NAMES


def _open(path: Path) -> PILImage.Image:
    kind = _FORMAT_NAMES.get(image_extension(path), "image")
    try:
        return PILImage.open(path)
    except _READ_ERRORS as err:
        raise InputError(f"not a readable {kind} file ({' '.join(str(err).split())})", path=path) from None


def read_raster(path: Path) -> Image:
    """Read a 2D raster image (first frame) into a channel-first ``Image``."""
    kind = _FORMAT_NAMES.get(image_extension(path), "image")
    with _open(path) as pil:
        try:
            pil.load()
            array, names = _pil_to_array(pil)
        except _READ_ERRORS as err:
            raise InputError(f"truncated or corrupt {kind} ({' '.join(str(err).split())})", path=path) from None
    return Image(np.ascontiguousarray(array), channel_names=names)


def read_raster_info(path: Path) -> ImageInfo:
    """Size, channels and voxel type from the file header (palette images decode their pixels)."""
    with _open(path) as pil:
        width, height = pil.size
        if pil.mode in ("P", "PA"):
            try:
                pil.load()
            except _READ_ERRORS as err:
                raise InputError(f"truncated or corrupt image ({err})", path=path) from None
            array, _ = _pil_to_array(pil)
            channels, dtype = array.shape[0], array.dtype
        elif pil.mode in _GREY_MODES or pil.mode in ("1", "LA", "La"):
            channels, dtype = 1, np.dtype(_GREY_MODES.get(pil.mode, np.uint8))
        else:
            channels, dtype = 3, np.dtype(np.uint8)
    return ImageInfo((height, width), channels, (1.0, 1.0), (0.0, 0.0), np.eye(2), np.dtype(dtype))


def _integer_pixels(array: np.ndarray, path: Path, allow_uint16: bool) -> np.ndarray:
    """Pixels as uint8 (or uint16) when their values allow it, else an InputError."""
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise InputError(f"{image_extension(path)} cannot hold non-integer (float) pixel values", path=path,
                             fix="round/scale to 0..255, or write .tif (float32 grey), .nii.gz or .npy")
    if array.dtype.kind not in "iuf":
        raise InputError(f"cannot write {array.dtype} pixels to {image_extension(path)}", path=path)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low >= 0 and high <= 255:
        return array.astype(np.uint8)
    if allow_uint16 and low >= 0 and high <= 65535:
        return array.astype(np.uint16)
    limit = "0..65535 (grey) or 0..255" if allow_uint16 else "0..255"
    raise InputError(f"pixel values {low:g}..{high:g} do not fit {image_extension(path)} ({limit})", path=path,
                     fix="rescale the values, or write .nii.gz / .npy")


def write_raster(image: Image, path: Path) -> None:
    """Write a 2D image with 1 (grey) or 3 (RGB) channels; uint8, or uint16 grey for PNG/TIFF."""
    ext = image_extension(path)
    if image.ndim != 2 or image.num_channels not in (1, 3):
        raise InputError(f"{ext} holds a 2D image with 1 or 3 channels, got {image.num_channels} channel(s) "
                         f"of shape {image.spatial_shape}", path=path, fix="write .nii.gz, .nrrd or .npy instead")
    array = image.array
    grey = image.num_channels == 1
    if ext in (".tif", ".tiff") and grey and array.dtype.kind == "f":
        pixels = array[0].astype(np.float32)
    else:
        pixels = _integer_pixels(array, path, allow_uint16=grey and ext in (".png", ".tif", ".tiff"))
        pixels = pixels[0] if grey else np.moveaxis(pixels, 0, -1)
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(path, format=_FORMAT_NAMES[ext])
