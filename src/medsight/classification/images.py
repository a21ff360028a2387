"""A 2D classification dataset held in memory at one resolution (uint8 RGB), for transfer-learning runs.

Hundreds of images of a few hundred pixels fit in memory many times over (ISIC: 440 x 3 x 224^2 bytes =
66 MB); holding them avoids re-reading and re-resizing JPEGs in every fold of every strategy.

Colour constancy (optional): photographs taken under different lights (dermoscopes, microscopes, fundus
cameras) can be brought to a common white by the Shades-of-Gray rule (Finlayson and Trezzi 2004; for
dermoscopy Barata et al. 2015, used by most top ISIC challenge entries): each channel is divided by its
Minkowski p-norm (p = 6) and the three gains are scaled to keep the image's mean norm. A grey image
(three equal channels) is left unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsight.datasets.loading import read_case_image
from medsight.datasets.manifest import Manifest
from medsight.errors import InputError
from medsight.parallel import parallel_map


@dataclass
class ImageSet:
    """Images ``(N, 3, side, side)`` uint8, class indices ``(N,)``, case ids and class names."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]

    def index_of(self, ids: list[str]) -> np.ndarray:
        """Row indices of the given case ids."""
        where = {case_id: i for i, case_id in enumerate(self.ids)}
        return np.array([where[i] for i in ids], dtype=np.int64)


def to_rgb_uint8(array: np.ndarray, path: str) -> np.ndarray:
    """(C, H, W) image -> (3, H, W) uint8: grey replicated, 8-bit kept, other ranges min-max scaled."""
    if array.ndim != 3 or array.shape[0] not in (1, 3, 4):
        raise InputError(f"expected a 2D grey or RGB image, got array shape {array.shape}", path=path)
    x = array[:3] if array.shape[0] >= 3 else np.repeat(array, 3, axis=0)
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo >= 0 and hi <= 255 and hi > 1.5:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.clip(np.rint((x - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """(3, H, W) uint8 -> (3, side, side) uint8, antialiased bilinear (PIL; aspect not kept).

    PIL rather than torch: this runs in worker processes, where torch's thread pool inherited by fork
    can deadlock.
    """
    from PIL import Image as PILImage

    rgb = PILImage.fromarray(np.ascontiguousarray(np.moveaxis(image, 0, -1)), mode="RGB")
    return np.moveaxis(np.asarray(rgb.resize((side, side), PILImage.BILINEAR, reducing_gap=None)), -1, 0).copy()


#: colour constancy methods :func:`load_image_set` knows; None leaves colours as they are
COLOR_CONSTANCY = ("shades_of_gray",)


def shades_of_gray(images: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Shades-of-Gray colour constancy of uint8 images ``(N, 3, H, W)`` (or one ``(3, H, W)``), as uint8.

    >>> x = np.zeros((3, 2, 2), np.uint8); x[0], x[1], x[2] = 200, 100, 100  # a reddish cast
    >>> shades_of_gray(x)[:, 0, 0].tolist()  # every channel at the mean of the three norms
    [133, 133, 133]
    """
    single = images.ndim == 3
    x = (images[None] if single else images).astype(np.float32) / 255.0
    norm = np.power(np.mean(np.power(x, p), axis=(2, 3), keepdims=True), 1.0 / p)  # (N, 3, 1, 1)
    gain = norm.mean(axis=1, keepdims=True) / np.maximum(norm, 1e-6)
    out = np.clip(np.rint(x * gain * 255.0), 0, 255).astype(np.uint8)
    return out[0] if single else out


def _load_one(args: tuple) -> np.ndarray:
    case, side = args
    image = read_case_image(case)
    return resize_square(to_rgb_uint8(image.array, case.images[0]), side)


def load_image_set(manifest: Manifest, side: int, workers: int | None = None,
                   color_constancy: str | None = None) -> ImageSet:
    """Every case of a 2D classification manifest, resized to ``side`` x ``side``, in memory.

    ``color_constancy``: None, or one of ``COLOR_CONSTANCY`` applied to each resized image.
    """
    if manifest.task != "classification" or manifest.dims != 2:
        raise InputError(f"needs a 2D classification dataset, this one is {manifest.dims}D {manifest.task}",
                         path=manifest.source or None)
    if color_constancy is not None and color_constancy not in COLOR_CONSTANCY:
        raise InputError(f"unknown colour constancy {color_constancy!r}", fix=f"use one of {COLOR_CONSTANCY} or none")
    images = parallel_map(_load_one, [(c, side) for c in manifest.cases], workers=workers, progress=False)
    if color_constancy == "shades_of_gray":
        images = [shades_of_gray(image) for image in images]
    values = manifest.label_values
    labels = np.array([values.index(int(c.label)) for c in manifest.cases], dtype=np.int64)
    return ImageSet(np.stack(images), labels, [c.id for c in manifest.cases], manifest.class_names)
