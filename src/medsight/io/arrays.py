"""NumPy files: ``.npy``, ``.npz`` and ``archive.npz::key[::index]`` refs (one sample of a stack, MedMNIST).

A plain array is laid out by its shape: (H, W) is 2D grey; (H, W, 3) is 2D RGB (channels R, G, B, as
MedMNIST and PIL store colour); any other 3-axis array is a 3D volume; a 4-axis array is channel-first
(C, X, Y, Z). An ``.npz`` written by medsight holds ``image`` (channel-first), ``spacing``, ``origin``,
``direction`` and ``channel_names``, so it keeps the geometry. Archive arrays are cached (small LRU),
so reading 1000 samples of one archive decompresses it once.
"""
from __future__ import annotations

import functools
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medsight.errors import InputError
from medsight.io.formats import ArrayRef, image_extension
from medsight.io.image import Image
from medsight.io.info import ImageInfo
from medsight.io.validation import output_dtype

ARCHIVE_CACHE_SIZE = 4
GEOMETRY_KEYS = ("image", "spacing", "origin", "direction")
RGB_NAMES = ["R", "G", "B"]
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def plain_layout(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, bool]:
    """(spatial shape, channels, channels_last) of a plain array, by the rules of the module docstring."""
    if len(shape) == 2:
        return tuple(shape), 1, False
    if len(shape) == 3 and shape[-1] == 3:
        return tuple(shape[:2]), 3, True
    if len(shape) == 3:
        return tuple(shape), 1, False
    if len(shape) == 4:
        return tuple(shape[1:]), shape[0], False
    raise ValueError(f"an array of shape {tuple(shape)} is not a 2D/3D image")


def image_from_plain_array(array: np.ndarray, path: str | Path) -> Image:
    """Wrap a plain numpy array as an ``Image`` with unit spacing (layout by shape)."""
    if array.dtype.kind not in "biuf":
        raise InputError(f"array of dtype {array.dtype} is not an image", path=path)
    try:
        _, channels, channels_last = plain_layout(array.shape)
    except ValueError as err:
        raise InputError(str(err), path=path) from None
    if channels_last:
        return Image(np.ascontiguousarray(np.moveaxis(array, -1, 0)), channel_names=RGB_NAMES)
    return Image(array[None] if array.ndim in (2, 3) else array)


def _file_stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=ARCHIVE_CACHE_SIZE * 4)
def _archive_keys(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    with np.load(path, allow_pickle=False) as archive:
        return tuple(archive.files)


@functools.lru_cache(maxsize=ARCHIVE_CACHE_SIZE)
def _archive_array(path: str, mtime_ns: int, size: int, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        array = archive[key]
    array.flags.writeable = False  # shared by every later read: copies are handed out
    return array


def _keys(path: Path) -> tuple[str, ...]:
    try:
        return _archive_keys(*_file_stamp(path))
    except _READ_ERRORS as err:
        raise InputError(f"not a readable .npz archive ({' '.join(str(err).split())})", path=path) from None


def _array(path: Path, key: str) -> np.ndarray:
    keys = _keys(path)
    if key not in keys:
        raise InputError(f"no array {key!r} in the archive (it holds {', '.join(keys)})", path=path)
    try:
        return _archive_array(*_file_stamp(path), key)
    except _READ_ERRORS as err:
        raise InputError(f"truncated or corrupt array {key!r} ({' '.join(str(err).split())})", path=path) from None


def _sample_index(index: int, count: int, key: str, path: Path) -> int:
    if not -count <= index < count:
        raise InputError(f"sample {index} is out of range: {key!r} holds {count} samples", path=path)
    return index


def _read_geometry_npz(path: Path) -> Image:
    with np.load(path, allow_pickle=False) as archive:
        names = [str(n) for n in archive["channel_names"].tolist()] if "channel_names" in archive.files else []
        return Image(archive["image"], spacing=tuple(archive["spacing"]), origin=tuple(archive["origin"]),
                     direction=archive["direction"], channel_names=names)


def read_array_file(ref: ArrayRef) -> Image:
    """Read a .npy file, a whole .npz (first array, or medsight's geometry archive), or one sample."""
    path, shown = ref.path, str(ref.path) + (f"::{ref.key}" if ref.key else "") + (
        f"::{ref.index}" if ref.index is not None else "")
    if not path.is_file():
        raise InputError("file not found", path=path)
    if image_extension(path) == ".npy":
        if ref.key is not None or ref.index is not None:
            raise InputError("a .npy file holds one array: refs with '::' need an .npz archive", path=shown)
        try:
            return image_from_plain_array(np.load(path, allow_pickle=False), path)
        except _READ_ERRORS as err:
            raise InputError(f"truncated or corrupt .npy ({' '.join(str(err).split())})", path=path) from None
    keys = _keys(path)
    if ref.key is None and set(GEOMETRY_KEYS) <= set(keys):
        try:
            return _read_geometry_npz(path)
        except (*_READ_ERRORS, TypeError) as err:
            raise InputError(f"corrupt medsight image archive ({' '.join(str(err).split())})", path=path) from None
    if not keys:
        raise InputError("the archive holds no arrays", path=path)
    key = ref.key or keys[0]
    array = _array(path, key)
    if ref.index is not None:
        if array.ndim < 3:
            raise InputError(f"{key!r} has shape {array.shape}: no stack of images to index", path=shown)
        array = array[_sample_index(ref.index, array.shape[0], key, path)]
    return image_from_plain_array(np.array(array), shown)


def _member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one archive member, read from its .npy header without the data."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(member)
    except _READ_ERRORS as err:
        raise InputError(f"unreadable array {key!r} ({' '.join(str(err).split())})", path=path) from None
    return tuple(shape), np.dtype(dtype)


def read_array_info(ref: ArrayRef) -> ImageInfo:
    """Shape and dtype of a .npy / .npz image without reading its voxels (geometry archives excepted)."""
    path = ref.path
    if not path.is_file():
        raise InputError("file not found", path=path)
    if image_extension(path) == ".npy":
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except _READ_ERRORS as err:
            raise InputError(f"truncated or corrupt .npy ({' '.join(str(err).split())})", path=path) from None
        shape, dtype = mapped.shape, mapped.dtype
    else:
        keys = _keys(path)
        if ref.key is None and set(GEOMETRY_KEYS) <= set(keys):
            return ImageInfo.of(read_array_file(ref))
        key = ref.key or (keys[0] if keys else "")
        if key not in keys:
            raise InputError(f"no array {key!r} in the archive (it holds {', '.join(keys)})", path=path)
        shape, dtype = _member_header(path, key)
        if ref.index is not None:
            if len(shape) < 3:
                raise InputError(f"{key!r} has shape {shape}: no stack of images to index", path=path)
            _sample_index(ref.index, shape[0], key, path)
            shape = shape[1:]
    try:
        spatial, channels, _ = plain_layout(tuple(shape))
    except ValueError as err:
        raise InputError(str(err), path=path) from None
    nd = len(spatial)
    return ImageInfo(spatial, channels, (1.0,) * nd, (0.0,) * nd, np.eye(nd), output_dtype(dtype))


def write_npy(image: Image, path: Path) -> None:
    """Write the voxels alone, in the plain layout that reads back to the same channels (no geometry)."""
    array, channels = image.array, image.num_channels
    if image.ndim == 2 and channels == 1:
        plain = array[0]
    elif image.ndim == 2 and channels == 3:
        plain = np.moveaxis(array, 0, -1)
    elif image.ndim == 2:
        raise InputError(f".npy cannot tell {channels} channels of a 2D image from a 3D volume", path=path,
                         fix="write .npz, which keeps channels and geometry")
    elif channels == 1 and array.shape[-1] != 3:
        plain = array[0]
    else:
        plain = array  # channel-first (C, X, Y, Z)
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(plain), allow_pickle=False)


def write_npz(image: Image, path: Path) -> None:
    """Write voxels and geometry (keys image, spacing, origin, direction, channel_names), compressed."""
    with open(path, "wb") as handle:
        np.savez_compressed(handle, image=image.array, spacing=np.asarray(image.spacing),
                            origin=np.asarray(image.origin), direction=np.asarray(image.direction),
                            channel_names=np.asarray([str(n) for n in image.channel_names]))
