"""One case through the Plan's preprocessing (crop, normalise, resample), and the exact way back."""
from __future__ import annotations

from typing import Any

import numpy as np

from medsight.io import Image
from medsight.preprocessing.crop import crop, nonzero_bbox, paste
from medsight.preprocessing.normalize import normalize
from medsight.preprocessing.resample import resample_image, resample_label, shape_for_spacing

PREPROCESSING_KEYS = ("dims", "target_spacing", "input_size", "normalization", "crop_to_nonzero",
                      "use_mask_for_norm", "image_order", "label_resampling", "label_mapping", "channels")
#: preprocessing entries newer than the keys above: they count (in the cache's hash) only where a plan sets them,
#: so that older plans keep their preprocessed caches
OPTIONAL_PREPROCESSING_KEYS = ("field_of_view_shape",)


def field_of_view_factor(full_shape: tuple[int, ...], reference_shape: list[int]) -> float:
    """The one scale factor (every axis alike, so proportions are kept) that gives an image of ``full_shape``
    as many pixels as ``reference_shape``: an image taken as showing the same field of view as the reference."""
    ratio = float(np.prod([float(r) for r in reference_shape])) / float(np.prod([float(s) for s in full_shape]))
    return ratio ** (1.0 / len(full_shape))


def target_shape(plan: dict, shape: tuple[int, ...], spacing: tuple[float, ...],
                 full_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Spatial shape a case of ``shape``/``spacing`` gets in the network's space.

    With the plan's ``field_of_view_shape`` (2D anatomy in a canonical view, files without physical spacing),
    the case is scaled by :func:`field_of_view_factor` of its uncropped ``full_shape``: a 256^2 chest X-ray
    meets a network trained on 512^2 ones at their scale.
    """
    if plan.get("input_size"):
        return tuple(int(s) for s in plan["input_size"])
    if plan.get("field_of_view_shape"):
        factor = field_of_view_factor(tuple(full_shape or shape), plan["field_of_view_shape"])
        return tuple(max(1, int(round(s * factor))) for s in shape)
    if plan.get("target_spacing"):
        return shape_for_spacing(shape, spacing, plan["target_spacing"])
    return tuple(shape)


def preprocess_image(image: Image, plan: dict, label: Image | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Crop, normalise and resample ``image`` (and its ``label``) as the plan says.

    Returns the network-space image (C, *s) float32, the label (1, *s) int16 or None, and the
    properties needed to map a prediction back (:func:`restore_prediction`).
    """
    array = image.array.astype(np.float32, copy=False)
    full_shape = image.spatial_shape
    bbox = nonzero_bbox(array) if plan.get("crop_to_nonzero") else [(0, s) for s in full_shape]
    array = crop(array, bbox)
    lab = crop(label.array, bbox) if label is not None else None
    mask = np.any(array != 0, axis=0) if plan.get("use_mask_for_norm") else None
    array = normalize(array, plan["normalization"], mask)
    cropped_shape = tuple(array.shape[1:])
    cropped_spacing = image.spacing
    new_shape = target_shape(plan, cropped_shape, cropped_spacing, full_shape)
    array = resample_image(array, new_shape, order=int(plan.get("image_order", 3)))
    if lab is not None:
        lab = resample_label(lab.astype(np.int16), new_shape, mode=plan.get("label_resampling", "onehot"))
    props = {"original_shape": list(full_shape), "original_spacing": list(image.spacing), "bbox": [list(b) for b in bbox],
             "cropped_shape": list(cropped_shape), "network_shape": list(new_shape)}
    return array, lab, props


def restore_prediction(pred: np.ndarray, props: dict, kind: str = "label", background: Any = 0) -> np.ndarray:
    """Map a network-space prediction (K, *s) back onto the original voxel grid of its case.

    ``kind="label"``: a (1, *s) label map, resampled by nearest neighbour; ``kind="probabilities"``: (K, *s)
    class probabilities resampled linearly, the cropped-away border set to ``background`` (class 0 = 1).
    """
    cropped_shape = tuple(props["cropped_shape"])
    full_shape = tuple(props["original_shape"])
    bbox = [tuple(b) for b in props["bbox"]]
    if kind == "label":
        restored = resample_label(pred, cropped_shape, mode="nearest")
        return paste(restored, bbox, full_shape, fill=background)
    restored = resample_image(pred.astype(np.float32, copy=False), cropped_shape, order=1)
    out = paste(restored, bbox, full_shape, fill=0.0)
    if out.shape[0] > 1 and any(b != (0, s) for b, s in zip(bbox, full_shape)):
        inside = np.zeros(full_shape, bool)
        inside[tuple(slice(a, b) for a, b in bbox)] = True
        out[0][~inside] = 1.0
    return out
