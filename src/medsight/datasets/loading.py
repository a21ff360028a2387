"""Reading one case of a manifest: its channels stacked into one Image, its label mapped to label values."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import Image, read_image
from medsight.io.formats import format_family


def read_case_image(case: Case, manifest: Manifest | None = None) -> Image:
    """All channel files of ``case`` as one (C, *spatial) float32 Image; channels must share geometry."""
    parts = [read_image(ref) for ref in case.images]
    first = parts[0]
    for ref, img in zip(case.images[1:], parts[1:]):
        if not img.same_geometry(first):
            raise InputError(f"channel has shape {img.spatial_shape} spacing {img.spacing} but the first channel "
                             f"{case.images[0]} has {first.spatial_shape} spacing {first.spacing}", path=ref)
    array = parts[0].array if len(parts) == 1 else np.concatenate([p.array for p in parts], axis=0)
    names = list(manifest.channels) if manifest and len(manifest.channels) == array.shape[0] else None
    return first.with_array(array.astype(np.float32, copy=False), channel_names=names)


def map_label_values(array: np.ndarray, mapping: dict[str, int]) -> np.ndarray:
    """Map raw label values to label values (``{"255": 1, "0": 0}``); unmapped values are kept."""
    if not mapping:
        return array
    out = array.copy()
    for raw, value in mapping.items():
        out[array == int(float(raw))] = int(value)
    return out


def mask_channel(array: np.ndarray, ref: str, what: str = "label") -> np.ndarray:
    """The one channel of a mask (1, *spatial): an RGB(A) raster whose channels repeat one value reads as
    its first; several volumes in a NIfTI/NRRD (a 4D mask) or differing colour channels are refused."""
    if array.shape[0] == 1:
        return array
    if format_family(str(ref).split("::")[0]) != "raster":
        raise InputError(f"{what} holds {array.shape[0]} volumes (a 4D or vector image); a mask is one "
                         f"{array.ndim - 1}D volume", path=ref, fix="save the mask as a single 2D/3D volume")
    if any(not np.array_equal(array[0], array[c]) for c in range(1, array.shape[0])):
        raise InputError(f"{what} has {array.shape[0]} different channels; a mask needs one", path=ref,
                         fix="save it as a single-channel (grey) image")
    return array[:1]


def read_case_label(case: Case, manifest: Manifest, reference: Image | None = None) -> Image | None:
    """The segmentation mask of ``case`` as a (1, *spatial) int16 Image with values mapped, or None.

    With ``reference`` (the case's image), a label of another shape or geometry is refused.
    """
    if manifest.task != "segmentation" or case.label is None:
        return None
    lbl = read_image(case.label)
    arr = mask_channel(lbl.array, case.label)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError("label holds non-integer values", path=case.label, fix="labels must be integer class values")
    arr = map_label_values(arr.astype(np.int32), manifest.label_mapping).astype(np.int16)
    if reference is not None and not lbl.same_geometry(reference):
        raise InputError(f"label has shape {lbl.spatial_shape} spacing {tuple(round(s, 4) for s in lbl.spacing)} "
                         f"but its image has shape {reference.spatial_shape} spacing "
                         f"{tuple(round(s, 4) for s in reference.spacing)}", path=case.label,
                         fix="label and image must share one voxel grid")
    return lbl.with_array(arr, channel_names=["label"])


def file_signature(refs: list[str]) -> str:
    """Hash of the identity of files (path, size, modification time): changes when the data changes."""
    h = hashlib.sha1()
    for ref in refs:
        path = str(ref).split("::")[0]
        try:
            st = os.stat(path)
            h.update(f"{ref}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{ref}|missing".encode())
    return h.hexdigest()[:16]


def case_files(case: Case) -> list[str]:
    """Every file a case references (images, label path, evaluation mask)."""
    refs = list(case.images)
    if isinstance(case.label, str):
        refs.append(case.label)
    if case.eval_mask:
        refs.append(case.eval_mask)
    return refs


def case_signature(case: Case) -> str:
    """Signature of one case's files and targets."""
    h = hashlib.sha1(file_signature(case_files(case)).encode())
    h.update(repr((case.label if not isinstance(case.label, str) else None, case.boxes, case.points)).encode())
    return h.hexdigest()[:16]


def dataset_path(p: str | Path) -> Path:
    """A dataset folder as a resolved Path."""
    return Path(p).expanduser().resolve()
