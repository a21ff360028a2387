"""The import-time file check: read every file of a dataset once, before anything is trained.

Errors are one-line ``InputError``s naming the file, also when raised in a worker thread or process.
Checked: every image readable, no NaN/Inf voxels, the channel files of a case on one grid, the channel
count the manifest declares; a mask single-channel (or channels repeating one value), on its image's
grid, integer-valued, every value mapped by ``label_mapping`` and declared in ``labels`` (an empty mask
is a warning); an evaluation mask on the image's grid; boxes inside their image; class values declared.
An image that holds no picture is a warning: constant, or constant along an axis (every column one value:
80 of the 440 ISIC UDA-1 JPEGs are such vertical stripes).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections import defaultdict
from dataclasses import dataclass, field
from warnings import catch_warnings, simplefilter
from typing import Any, Callable

import numpy as np
from medsight.progress import progress as progress_bar

from medsight.datasets.loading import mask_channel
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError, MedsightError
from medsight.io import is_array_ref, parse_array_ref, read_header, read_image


@dataclass
class CaseFacts:
    """What reading one case's files found out (beyond passing the checks)."""

    case_id: str
    label_counts: dict[int, int] = field(default_factory=dict)  # raw mask value -> voxels
    warnings: list[str] = field(default_factory=list)
    without_picture: bool = False  # an image file of the case is constant, or constant along an axis


@dataclass(frozen=True)
class CheckSpec:
    """The part of a manifest a worker needs to check one case."""

    task: str
    dims: int
    channels: tuple[str, ...]


def _describe(image: Any, other: Any = None) -> str:
    """Shape, spacing and origin of ``image``; its direction too when it differs from ``other``'s."""
    spacing = tuple(round(s, 4) for s in image.spacing)
    origin = tuple(round(o, 3) for o in image.origin)
    text = f"shape {image.spatial_shape} spacing {spacing} origin {origin}"
    if other is not None and not np.allclose(image.direction, other.direction, atol=1e-3):
        text += f" direction {np.round(image.direction, 3).tolist()}"
    return text


def _read(ref: str):
    """read_image, with any failure turned into a one-line InputError naming the file."""
    try:
        return read_image(ref)
    except MedsightError:
        raise
    except Exception as e:  # noqa: BLE001 - a library's own error for a bad file
        raise InputError(f"cannot be read ({type(e).__name__}: {e})", path=ref) from None


def _check_finite(array: np.ndarray, ref: str) -> None:
    if array.dtype.kind in "fc":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise InputError(f"{bad} of {array.size} voxels are NaN or Inf", path=ref,
                             fix="replace them (e.g. with 0) before importing")


#: an image "does not vary" along an axis when no line along it spans more than this share of its value range
FLAT_SHARE = 0.01


def degenerate_image(array: np.ndarray) -> str | None:
    """Why a channel-first image holds no picture, or None: constant, or constant along a spatial axis
    (a 2D image whose every column, or row, holds one value; a volume that repeats one slice)."""
    if array.size == 0:
        return None
    with catch_warnings():  # an all-NaN image: nanmin warns and gives NaN, handled below
        simplefilter("ignore", RuntimeWarning)
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    span = hi - lo
    if not np.isfinite(span):  # NaN or Inf voxels: refused (import) or beyond this question
        return None
    if span == 0:
        return f"is constant (every voxel {lo:g}): it holds no picture"
    nd = array.ndim - 1
    for axis in range(nd):
        if array.shape[axis + 1] < 2:  # a single slice along this axis (a 2D image kept in 3D) says nothing
            continue
        along = np.ptp(array, axis=axis + 1)
        if float(np.nanmax(along)) <= FLAT_SHARE * span:
            if nd == 2:
                what = "every column holds one value (vertical stripes)" if axis == 0 else \
                    "every row holds one value (horizontal stripes)"
            else:
                what = f"every line along axis {axis} holds one value (one slice repeated)"
            return f"{what}: likely a corrupt or placeholder image"
    return None


def _check_boxes(case: Case, shape: tuple[int, ...], ref: str) -> None:
    nd = len(shape)
    # 2D boxes are (x = column, y = row): extent (columns, rows); 3D boxes are voxel indices (i, j, k)
    extent = (shape[1], shape[0]) if nd == 2 else tuple(shape)
    for item in case.boxes:
        box = [float(v) for v in item["box"]]
        if len(box) != 2 * nd:
            raise InputError(f"box {item['box']} of case {case.id} has {len(box)} numbers; a {nd}D box needs "
                             f"{2 * nd}", path=ref)
        lo, hi = box[:nd], box[nd:]
        if any(a < 0 or b > e or b < a for a, b, e in zip(lo, hi, extent)):
            raise InputError(f"box {item['box']} of case {case.id} lies outside the image "
                             f"({' x '.join(str(e) for e in extent)})", path=ref)


def check_case(case: Case, spec: CheckSpec) -> CaseFacts:
    """Read and check every file of one case; raise InputError naming the first bad one."""
    facts = CaseFacts(case.id)
    first, first_ref, n_channels = None, case.images[0], 0
    for ref in case.images:
        image = _read(ref)
        _check_finite(image.array, ref)
        flat = degenerate_image(image.array)
        if flat:
            facts.warnings.append(f"{ref}: {flat}")
            facts.without_picture = True
        n_channels += image.num_channels
        if first is None:
            first = image
        elif not image.same_geometry(first):
            raise InputError(f"channel file has {_describe(image, first)} but {first_ref} has "
                             f"{_describe(first, image)}", path=ref,
                             fix="resample the channels of a case onto one grid")
        image.array = image.array[:0]  # keep the geometry (shape, spacing...), free the voxels
    if first.ndim != spec.dims:
        raise InputError(f"is {first.ndim}D but the dataset is {spec.dims}D", path=first_ref)
    if n_channels != len(spec.channels):
        raise InputError(f"case {case.id} has {n_channels} channel(s) but the dataset declares "
                         f"{len(spec.channels)} ({', '.join(spec.channels)})", path=first_ref)
    if spec.task == "segmentation" and isinstance(case.label, str):
        facts.label_counts = _check_mask(case.label, first, first_ref, "label")
    if case.eval_mask:
        inside = _check_mask(case.eval_mask, first, first_ref, "evaluation mask")
        if not any(v != 0 for v in inside):
            facts.warnings.append(f"{case.eval_mask}: evaluation mask is empty: case {case.id} will score nothing")
    if case.boxes:
        _check_boxes(case, first.spatial_shape, first_ref)
    return facts


def _check_mask(ref: str, image: Any, image_ref: str, what: str) -> dict[int, int]:
    """Check a mask against its image; {value: voxel count}."""
    mask = _read(ref)
    array = mask_channel(mask.array, ref, what)  # an RGB(A) mask repeating one value per channel: its first
    if mask.spatial_shape != image.spatial_shape:
        raise InputError(f"{what} has shape {mask.spatial_shape} but image {image_ref} has {image.spatial_shape}",
                         path=ref)
    if not mask.same_geometry(image):
        raise InputError(f"{what} has {_describe(mask, image)} but image {image_ref} has {_describe(image, mask)}",
                         path=ref,
                         fix="write the mask with its image's header")
    _check_finite(array, ref)
    values, counts = np.unique(array, return_counts=True)
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        odd = values[values != np.round(values)][:5].tolist()
        raise InputError(f"{what} holds non-integer values {odd}", path=ref, fix="masks hold integer label values")
    return {int(v): int(c) for v, c in zip(values, counts)}


def check_array_stack(archive: str, key: str, indices: list[int], spec: CheckSpec) -> CaseFacts:
    """Check one array of an .npz (MedMNIST) that many cases index into (medsight.io caches the array)."""
    info = read_header(f"{archive}::{key}::0")
    if info.ndim != spec.dims or info.num_channels != len(spec.channels):
        raise InputError(f"{key} samples are {info.num_channels} channel(s) x {info.spatial_shape}; the dataset "
                         f"declares {len(spec.channels)} channel(s) in {spec.dims}D", path=archive)
    # reading one sample decompresses (and caches) the whole array, so a corrupt archive fails here; float
    # samples are all read for NaN/Inf, integer ones cannot hold those: the first and the last suffice
    wanted = sorted(set(indices)) if info.dtype.kind == "f" else sorted({min(indices), max(indices)})
    for index in wanted:
        ref = f"{archive}::{key}::{index}"
        _check_finite(_read(ref).array, ref)
    return CaseFacts(f"{archive}::{key}")


def _guarded(fn: Callable, *args: Any) -> tuple:
    """Run a check; errors come back as plain data, so a worker process never pickles a traceback."""
    try:
        return ("ok", fn(*args))
    except MedsightError as e:
        return ("error", e.problem, e.path, e.fix)
    except Exception as e:  # noqa: BLE001
        return ("error", f"check failed ({type(e).__name__}: {e})", None, None)


def _jobs(manifest: Manifest, spec: CheckSpec) -> list[tuple]:
    stacks: dict[tuple[str, str], list[int]] = defaultdict(list)
    jobs = []
    for case in manifest.cases:
        if case.images and all(is_array_ref(r) for r in case.images) and not isinstance(case.label, str):
            for ref in case.images:
                parsed = parse_array_ref(ref)
                stacks[(str(parsed.path), parsed.key or "")].append(parsed.index or 0)
        else:
            jobs.append((check_case, case, spec))
    jobs += [(check_array_stack, archive, key, indices, spec) for (archive, key), indices in stacks.items()]
    return jobs


def scan_dataset(manifest: Manifest, workers: int = 2, progress: bool = True,
                 processes: bool = False) -> dict[str, CaseFacts]:
    """Read every file of ``manifest`` (in ``workers`` threads, or processes); {case id: facts}."""
    if not manifest.cases:
        raise InputError("the dataset has no cases", path=manifest.source or None)
    spec = CheckSpec(manifest.task, manifest.dims, tuple(manifest.channels))
    jobs = _jobs(manifest, spec)
    bar = progress_bar(total=len(jobs), desc="checking files", unit="case", requested=progress)
    facts: dict[str, CaseFacts] = {}
    if workers <= 1 or len(jobs) == 1:
        executor = None
        results = (_guarded(*job) for job in jobs)
    else:
        executor = (cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if processes
                    else cf.ThreadPoolExecutor(workers, thread_name_prefix="medsight-check"))
        futures = [executor.submit(_guarded, *job) for job in jobs]
        results = (future.result() for future in futures)
    try:
        for result in results:
            if result[0] == "error":
                raise InputError(result[1], path=result[2], fix=result[3])
            facts[result[1].case_id] = result[1]
            bar.update()
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return facts


def validate_labels(manifest: Manifest, facts: dict[str, CaseFacts]) -> list[str]:
    """Raise InputError for undeclared or unmapped target values; warnings (empty masks)."""
    declared = set(manifest.label_values)
    warnings: list[str] = []
    mapping = manifest.label_mapping
    for case in manifest.cases:
        if manifest.task == "segmentation" and case.id in facts and isinstance(case.label, str):
            raw = set(facts[case.id].label_counts)
            unmapped = sorted(v for v in raw if mapping and str(v) not in mapping)
            if unmapped:
                raise InputError(f"label holds values {unmapped[:10]} that the label mapping does not map",
                                 path=case.label, fix="extend --label-map to every value in the masks")
            values = {mapping[str(v)] if mapping else v for v in raw}
            undeclared = sorted(values - declared)
            if undeclared:
                raise InputError(f"label holds values {undeclared[:10]} not declared in the dataset's labels "
                                 f"{sorted(declared)}", path=case.label,
                                 fix="declare them (dataset.json labels) or map them with --label-map")
            if values <= {0}:
                warnings.append(f"{case.label}: mask is empty (background only)")
        elif manifest.task == "classification" and case.label is not None and int(case.label) not in declared:
            raise InputError(f"class {case.label} of case {case.id} is not among the declared classes "
                             f"{sorted(declared)}", path=case.images[0])
        elif manifest.task == "detection":
            for item in case.boxes:
                if int(item["label"]) not in declared or int(item["label"]) == 0:
                    raise InputError(f"box class {item['label']} of case {case.id} is not a declared class "
                                     f"{sorted(declared - {0})}", path=case.images[0])
    return warnings


def check_dataset(manifest: Manifest, workers: int = 2, progress: bool = True) -> list[str]:
    """Read every file of the dataset and check it; raise InputError on bad input, return warnings."""
    facts = scan_dataset(manifest, workers=workers, progress=progress)
    warnings = [w for f in facts.values() for w in f.warnings]
    return warnings + validate_labels(manifest, facts)
