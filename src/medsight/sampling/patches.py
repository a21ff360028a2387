"""Which patches a network sees: random and foreground-centred patches, batches, multi-scale views.

A case is given as arrays: ``image`` (C, *spatial) float32 (a memmap is fine: only patches are read),
``label`` (1, *spatial) integer or None, and ``class_locations`` from :func:`sample_class_locations`.
A patch of size ``P`` centred on voxel ``c`` covers ``[c - P // 2, c - P // 2 + P)``; parts outside the
image are padded (image 0, label ``label_pad_value``).

Example:
    >>> import numpy as np
    >>> label = np.zeros((1, 20, 20), np.uint8); label[0, 15, 15] = 2
    >>> locs = sample_class_locations(label, seed=0)
    >>> sampler = PatchSampler((8, 8), oversample_foreground=1.0, rng=0)
    >>> img, lbl = sampler.sample(np.zeros((1, 20, 20), np.float32), label, locs)
    >>> int(lbl.max()), img.shape
    (2, (1, 8, 8))
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsight.augmentation.pipeline import TrainingAugmentation
from medsight.augmentation.spatial import crop_with_padding, extract_patch, initial_patch_size
from medsight.errors import InputError
from medsight.sampling.regions import labels_to_regions, region_table, region_training, region_values

__all__ = [
    "BatchLoader",
    "PatchSampler",
    "PatchSource",
    "extract_multiscale",
    "extract_orthogonal_planes",
    "initial_patch_size",
    "sample_class_locations",
    "segmentation_batches",
]

SeedLike = int | np.random.Generator | None


def sample_class_locations(label: np.ndarray, max_per_class: int = 10000, seed: int = 0, background: int = 0,
                           ignore_value: int | None = None) -> dict[int, np.ndarray]:
    """Voxel indices (M, nd) of every foreground class, at most ``max_per_class`` each (a random subset)."""
    arr = np.asarray(label)
    if arr.ndim >= 3 and arr.shape[0] == 1:
        arr = arr[0]
    flat = arr.reshape(-1)
    candidates = np.flatnonzero(flat != background)
    values = flat[candidates]
    rng = np.random.default_rng(seed)
    locations: dict[int, np.ndarray] = {}
    for value in np.unique(values):
        if ignore_value is not None and value == ignore_value:
            continue
        where = candidates[values == value]
        if len(where) > max_per_class:
            where = np.sort(rng.choice(where, max_per_class, replace=False))
        locations[int(value)] = np.stack(np.unravel_index(where, arr.shape), axis=1).astype(np.int32)
    return locations


@dataclass
class PatchSource:
    """One preprocessed case as the sampler reads it."""

    image: np.ndarray  # (C, *spatial) float32, memmap allowed
    label: np.ndarray | None = None  # (1, *spatial) integer
    class_locations: Mapping[int, np.ndarray] | None = None  # class -> (M, nd) voxel indices

    @classmethod
    def of(cls, item: Any) -> "PatchSource":
        """Accept a PatchSource, a (image, label, class_locations) tuple or a mapping with those keys."""
        if isinstance(item, PatchSource):
            return item
        if isinstance(item, Mapping):
            return cls(item["image"], item.get("label"), item.get("class_locations"))
        if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
            return cls(*item)
        if hasattr(item, "image"):
            return cls(item.image, getattr(item, "label", None), getattr(item, "class_locations", None))
        raise InputError(f"cannot read a case from {type(item).__name__}",
                         fix="give (image, label, class_locations) or a PatchSource")


def _as_rng(rng: SeedLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class PatchSampler:
    """Random patches, a share of them centred on a foreground voxel (nnU-Net's foreground oversampling).

    ``oversample_foreground``: probability that :meth:`sample` forces a foreground centre (when the case
    has foreground). The class is drawn uniformly among the classes present (``class_choice="uniform"``)
    or in turn (``"round_robin"``), so rare classes get as many patches as common ones.
    ``crop_size``: size actually cut (e.g. :func:`initial_patch_size` for a later rotation), centred on
    the patch; defaults to ``patch_size``.
    """

    def __init__(self, patch_size: Sequence[int], oversample_foreground: float = 1 / 3, rng: SeedLike = None,
                 crop_size: Sequence[int] | None = None, class_choice: str = "uniform",
                 image_pad_value: float = 0.0, label_pad_value: int = 0):
        self.patch_size = tuple(int(p) for p in patch_size)
        self.crop_size = tuple(int(p) for p in crop_size) if crop_size is not None else self.patch_size
        if len(self.crop_size) != len(self.patch_size) or min(self.patch_size) < 1:
            raise InputError(f"bad patch size {self.patch_size} / crop size {self.crop_size}")
        if not 0.0 <= oversample_foreground <= 1.0:
            raise InputError(f"oversample_foreground {oversample_foreground} outside [0, 1]")
        if class_choice not in ("uniform", "round_robin"):
            raise InputError(f"unknown class_choice {class_choice!r}", fix="use 'uniform' or 'round_robin'")
        self.oversample_foreground = float(oversample_foreground)
        self.class_choice = class_choice
        self.image_pad_value = image_pad_value
        self.label_pad_value = label_pad_value
        self.rng = _as_rng(rng)
        self._turn = 0

    def reseed(self, seed: SeedLike) -> None:
        """Restart the random stream (and the class turn), e.g. with ``(seed, epoch)`` for exact resume."""
        self.rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        self._turn = 0

    def _bounds(self, spatial_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest patch corner keeping the patch inside the image (centred where it cannot fit)."""
        shape = np.asarray(spatial_shape, dtype=np.int64)
        size = np.asarray(self.patch_size, dtype=np.int64)
        fits = shape >= size
        lo = np.where(fits, 0, (shape - size) // 2)
        hi = np.where(fits, shape - size, lo)
        return lo, hi

    def draw_center(self, spatial_shape: Sequence[int], class_locations: Mapping[int, np.ndarray] | None = None,
                    force_foreground: bool | None = None, rng: np.random.Generator | None = None,
                    turn: int | None = None) -> tuple[np.ndarray, int | None]:
        """A patch centre and the class it was forced onto (None for a random patch)."""
        rng = rng if rng is not None else self.rng
        if len(spatial_shape) != len(self.patch_size):
            raise InputError(f"image of {len(spatial_shape)} spatial axes for a {len(self.patch_size)}D patch")
        if force_foreground is None:
            force_foreground = rng.random() < self.oversample_foreground
        lo, hi = self._bounds(spatial_shape)
        half = np.asarray(self.patch_size) // 2
        present = sorted(c for c, loc in (class_locations or {}).items() if len(loc))
        if force_foreground and present:
            if self.class_choice == "round_robin":
                if turn is None:
                    turn, self._turn = self._turn, self._turn + 1
                cls = present[turn % len(present)]
            else:
                cls = present[int(rng.integers(len(present)))]
            locations = class_locations[cls]  # type: ignore[index]
            voxel = np.asarray(locations[int(rng.integers(len(locations)))], dtype=np.int64)
            lower = np.clip(voxel - half, lo, hi)
            return lower + half, cls
        lower = np.array([rng.integers(a, b + 1) for a, b in zip(lo, hi)], dtype=np.int64)
        return lower + half, None

    def sample(self, image: np.ndarray, label: np.ndarray | None = None,
               class_locations: Mapping[int, np.ndarray] | None = None, force_foreground: bool | None = None,
               center: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Cut one (C, *crop_size) image patch and its (1, *crop_size) label patch (copies; padded at borders)."""
        if center is None:
            center, _ = self.draw_center(image.shape[1:], class_locations, force_foreground)
        lower = [int(c) - s // 2 for c, s in zip(center, self.crop_size)]
        img = crop_with_padding(image, lower, self.crop_size, self.image_pad_value)
        lbl = crop_with_padding(label, lower, self.crop_size, self.label_pad_value) if label is not None else None
        return img, lbl


class BatchLoader:
    """Batches ``(B, C, *patch)`` float32 and ``(B, 1, *patch)`` labels of augmented patches.

    Deterministic in ``(seed, epoch, batch index)``: every batch draws from its own generator, so
    background threads (``num_threads``) and resuming at any epoch give the same batches. The last
    ``oversample_foreground`` share of each batch is forced onto foreground (``oversample_mode=
    "batch_tail"``, nnU-Net's rule: with 2 patches, the second), or each patch with that probability
    (``"probabilistic"``). Labels come as ``label_dtype`` (cast with ``.long()`` for cross-entropy);
    ``target_transform`` (e.g. labels -> multi-hot regions) maps each label batch after augmentation,
    in the loader's threads.
    """

    def __init__(self, cases: Sequence[Any], patch_size: Sequence[int], batch_size: int = 2,
                 augmentation: TrainingAugmentation | None = None, oversample_foreground: float = 1 / 3,
                 oversample_mode: str = "batch_tail", seed: int | Sequence[int] = 0, num_threads: int = 0,
                 prefetch: int = 2, class_choice: str = "uniform", image_pad_value: float = 0.0,
                 label_pad_value: int = 0, label_dtype: torch.dtype = torch.int16,
                 case_weights: Sequence[float] | None = None,
                 target_transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if not len(cases):
            raise InputError("no cases to sample patches from")
        if oversample_mode not in ("batch_tail", "probabilistic"):
            raise InputError(f"unknown oversample_mode {oversample_mode!r}", fix="use 'batch_tail' or 'probabilistic'")
        self.cases = [PatchSource.of(c) for c in cases]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.augmentation = augmentation
        self.seed = [int(s) for s in np.atleast_1d(seed)]
        self.sampler = PatchSampler(self.patch_size, oversample_foreground, rng=np.random.default_rng(self.seed),
                                    class_choice=class_choice, image_pad_value=image_pad_value,
                                    label_pad_value=label_pad_value)
        self.oversample_mode = oversample_mode
        self.num_threads = int(num_threads)
        self.prefetch = max(1, int(prefetch))
        self.label_dtype = label_dtype
        self.target_transform = target_transform
        self.case_probabilities = None
        if case_weights is not None:
            weights = np.asarray(case_weights, dtype=float)
            if weights.shape != (len(self.cases),) or weights.min() < 0 or weights.sum() <= 0:
                raise InputError("case_weights must be one non-negative weight per case, not all zero")
            self.case_probabilities = weights / weights.sum()
        channels = {c.image.shape[0] for c in self.cases}
        if len(channels) != 1:
            raise InputError(f"cases have different channel counts {sorted(channels)}")
        self.num_channels = channels.pop()
        self.has_labels = all(c.label is not None for c in self.cases)

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        """The generator of batch ``index`` of ``epoch``."""
        return np.random.default_rng(np.random.SeedSequence([*self.seed, int(epoch), int(index)]))

    def _forced(self, position: int, rng: np.random.Generator) -> bool:
        p = self.sampler.oversample_foreground
        if self.oversample_mode == "probabilistic":
            return bool(rng.random() < p)
        return position >= round(self.batch_size * (1 - p))

    def batch(self, epoch: int, index: int, case_indices: Sequence[int] | None = None,
              record: list | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Batch ``index`` of ``epoch``; ``case_indices`` picks the cases (else drawn at random)."""
        rng = self.rng_for(epoch, index)
        images = torch.empty((self.batch_size, self.num_channels, *self.patch_size), dtype=torch.float32)
        labels = None
        if self.has_labels:
            labels = torch.empty((self.batch_size, 1, *self.patch_size), dtype=self.label_dtype)
        for i in range(self.batch_size):
            if case_indices is not None:
                case_index = int(case_indices[i])
            else:
                case_index = int(rng.choice(len(self.cases), p=self.case_probabilities))
            case = self.cases[case_index]
            center, cls = self.sampler.draw_center(case.image.shape[1:], case.class_locations,
                                                   self._forced(i, rng), rng, turn=index * self.batch_size + i)
            sample_record = [] if record is not None else None
            if self.augmentation is not None:
                img, lbl = self.augmentation.extract(case.image, case.label, center, rng, self.patch_size,
                                                     self.sampler.image_pad_value, self.sampler.label_pad_value,
                                                     sample_record)
            else:
                img, lbl = extract_patch(case.image, case.label, center, self.patch_size, None,
                                         self.sampler.image_pad_value, self.sampler.label_pad_value)
            images[i].copy_(img)
            if labels is not None and lbl is not None:
                labels[i].copy_(lbl)
            if record is not None:
                record.append({"case": case_index, "center": center.tolist(), "class": cls,
                               "transforms": sample_record})
        if labels is not None and self.target_transform is not None:
            labels = self.target_transform(labels)
        return images, labels

    def iterate(self, epoch: int, num_batches: int | None = None,
                indices: Sequence[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches ``indices`` (default ``0..num_batches-1``) of ``epoch`` in order, built ahead by threads if asked."""
        if indices is None:
            if num_batches is None:
                raise InputError("iterate needs num_batches or indices")
            indices = range(num_batches)
        if self.num_threads <= 0:
            for index in indices:
                yield self.batch(epoch, index)
            return
        with ThreadPoolExecutor(self.num_threads) as pool:
            pending: list[Future] = []
            ahead = self.num_threads + self.prefetch
            for index in indices:
                pending.append(pool.submit(self.batch, epoch, index))
                if len(pending) >= ahead:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()


def segmentation_batches(data: Any, plan: Mapping[str, Any], epoch_seed: Sequence[int], steps: int, rank: int = 0,
                         world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """The ``steps`` training batches of one epoch for a segmentation plan, as (images, labels) tensors.

    ``data`` is a :class:`medsight.preprocessing.cache.CachedCases` (``ids``, ``image(id)``, ``label(id)``,
    ``locations(id)``; arrays memory-mapped). ``epoch_seed`` is ``(seed, epoch)``: batch ``s`` of process
    ``rank`` is batch ``s * world + rank`` of the epoch, so every process draws different, reproducible
    batches and a resumed run repeats an uninterrupted one. Plan keys: ``patch_size``, ``batch_size``,
    ``sampler.oversample_foreground`` (default 1/3), ``augmentation`` (see :class:`TrainingAugmentation`),
    ``region_training`` + ``regions``: targets are then (B, R, *patch) float multi-hot region maps built
    from the augmented label patches (see :mod:`medsight.sampling.regions`).
    """
    patch_size = [int(p) for p in plan["patch_size"]]
    sampler_cfg = dict(plan.get("sampler") or {})
    augmentation = TrainingAugmentation(len(patch_size), plan.get("augmentation") or {}, patch_size)
    cases = [PatchSource(data.image(cid), data.label(cid), data.locations(cid)) for cid in data.ids]
    *seed, epoch = (int(v) for v in epoch_seed)
    threads = int(sampler_cfg.get("threads", min(4, (os.cpu_count() or 1) // 4)))
    loader = BatchLoader(cases, patch_size, int(plan["batch_size"]), augmentation,
                         oversample_foreground=float(sampler_cfg.get("oversample_foreground", 1 / 3)),
                         seed=seed or [0], num_threads=threads, target_transform=_target_transform(plan))
    yield from loader.iterate(epoch, indices=[step * world + rank for step in range(steps)])


def _target_transform(plan: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Labels -> multi-hot regions for a region-training plan; None (label maps as they are) otherwise."""
    if not region_training(plan):
        return None
    num_values = max((int(v) for v in plan.get("labels", {})), default=0) + 1
    table = region_table(region_values(plan), num_values)
    return lambda labels: labels_to_regions(labels, table)


def _area_resize(patch: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Average-pool (C, *region) down to (C, *size): exact block means for integer factors."""
    tensor = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))[None]
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(size)]
    return pool(tensor, tuple(size))[0].numpy()


def extract_multiscale(image: np.ndarray, center: Sequence[int], patch_size: Sequence[int],
                       scales: Sequence[float] = (1, 2, 4), pad_value: float = 0.0) -> np.ndarray:
    """(S, C, *patch) views around ``center``: scale ``s`` covers ``s * patch`` voxels, averaged down to the patch."""
    size = tuple(int(p) for p in patch_size)
    views = []
    for scale in scales:
        if scale < 1:
            raise InputError(f"multi-scale factor {scale} < 1", fix="use factors >= 1 (1 = full resolution)")
        region = tuple(int(round(scale * p)) for p in size)
        lower = [int(c) - r // 2 for c, r in zip(center, region)]
        crop = crop_with_padding(image, lower, region, pad_value)
        views.append(crop.astype(np.float32, copy=False) if region == size else _area_resize(crop, size))
    return np.stack(views)


def extract_orthogonal_planes(volume: np.ndarray, center: Sequence[int], size: int,
                              pad_value: float = 0.0) -> np.ndarray:
    """(3, C, size, size) 2.5D view: the planes through ``center`` across axis 0, 1 and 2, each centred on it."""
    if volume.ndim != 4:
        raise InputError(f"orthogonal planes need a (C, X, Y, Z) volume, got shape {volume.shape}")
    planes = []
    for axis in range(3):
        crop_size = [1 if a == axis else int(size) for a in range(3)]
        lower = [int(c) - s // 2 for c, s in zip(center, crop_size)]
        crop = crop_with_padding(volume, lower, crop_size, pad_value)
        planes.append(np.squeeze(crop, axis=axis + 1))
    return np.stack(planes).astype(np.float32, copy=False)
