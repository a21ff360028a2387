"""A 2D classification dataset held in memory at one resolution (uint8 RGB), for transfer-learning runs.

Hundreds of images of a few hundred pixels fit in memory many times over (ISIC: 440 x 3 x 224^2 bytes =
66 MB); holding them avoids re-reading and re-resizing JPEGs in every fold of every strategy.
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


def _load_one(args: tuple) -> np.ndarray:
    case, side = args
    image = read_case_image(case)
    return resize_square(to_rgb_uint8(image.array, case.images[0]), side)


def load_image_set(manifest: Manifest, side: int, workers: int | None = None) -> ImageSet:
    """Every case of a 2D classification manifest, resized to ``side`` x ``side``, in memory."""
    if manifest.task != "classification" or manifest.dims != 2:
        raise InputError(f"needs a 2D classification dataset, this one is {manifest.dims}D {manifest.task}",
                         path=manifest.source or None)
    images = parallel_map(_load_one, [(c, side) for c in manifest.cases], workers=workers, progress=False)
    values = manifest.label_values
    labels = np.array([values.index(int(c.label)) for c in manifest.cases], dtype=np.int64)
    return ImageSet(np.stack(images), labels, [c.id for c in manifest.cases], manifest.class_names)
