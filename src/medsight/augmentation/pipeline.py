"""nnU-Net's default training augmentation, configured by a plain dict a Plan can hold and edit.

Probabilities and ranges are nnU-Net v2's (``nnUNetTrainer.get_training_transforms``): rotation 0.2,
scaling 0.2 (0.7-1.4, one factor for all axes), mirroring 0.5 per axis, Gaussian noise 0.1, blur 0.2
(each channel 0.5), brightness 0.15, contrast 0.15, low resolution 0.25 (each channel 0.5), inverted
gamma 0.1, gamma 0.3 (0.7-1.5, statistics kept). Elastic deformation is off, as in nnU-Net.

Example:
    >>> import numpy as np
    >>> aug = TrainingAugmentation(3, {"rotation": None, "elastic": False}, patch_size=(8, 8, 8))
    >>> img, lbl = aug(np.zeros((2, 12, 12, 12), np.float32), np.zeros((1, 12, 12, 12), np.uint8),
    ...                np.random.default_rng(0))
    >>> tuple(img.shape), tuple(lbl.shape)
    ((2, 8, 8, 8), (1, 8, 8, 8))
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from medsight.augmentation import intensity
from medsight.augmentation.spatial import ArrayLike, SpatialParams, affine_matrix, elastic_displacement, extract_patch
from medsight.errors import PlanError

_DEG30 = 30.0 / 180.0 * math.pi

_COMMON: dict[str, Any] = {
    "p_rotation": 0.2,
    "scale": [0.7, 1.4], "p_scale": 0.2,
    "p_mirror": 0.5,
    "elastic": False, "p_elastic": 0.2, "elastic_sigma": 12.0, "elastic_magnitude": 3.0,
    "noise": True, "p_noise": 0.1, "noise_std": [0.0, 0.1],
    "blur": True, "p_blur": 0.2, "p_blur_channel": 0.5, "blur_sigma": [0.5, 1.0],
    "brightness": True, "p_brightness": 0.15, "brightness_range": [0.75, 1.25],
    "contrast": True, "p_contrast": 0.15, "contrast_range": [0.75, 1.25],
    "low_resolution": True, "p_low_resolution": 0.25, "p_low_resolution_channel": 0.5,
    "low_resolution_scale": [0.5, 1.0],
    "gamma": True, "p_gamma": 0.3, "p_gamma_inverted": 0.1, "gamma_range": [0.7, 1.5],
}


# a switch may also carry its range, as plans write it: {"gamma": [0.7, 1.5], "noise": 0.1}
_SWITCH_RANGES = {"noise": "noise_std", "blur": "blur_sigma", "brightness": "brightness_range",
                  "contrast": "contrast_range", "low_resolution": "low_resolution_scale", "gamma": "gamma_range"}


def _normalise_switches(params: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"gamma": [0.7, 1.5]}`` into ``{"gamma": True, "gamma_range": [0.7, 1.5]}`` (a number: noise std max)."""
    out = dict(params)
    for switch, range_key in _SWITCH_RANGES.items():
        value = out.get(switch)
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise PlanError(f"augmentation {switch!r} range {value!r} must be [lo, hi]")
            out[switch], out[range_key] = True, [float(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if switch != "noise":
                raise PlanError(f"augmentation {switch!r} needs true/false or a [lo, hi] range, not {value!r}")
            out[switch], out[range_key] = value > 0, [0.0, float(value)]
    return out


def default_params(dims: int) -> dict[str, Any]:
    """nnU-Net's default augmentation settings for 2D or 3D patches, as an editable dict."""
    if dims not in (2, 3):
        raise PlanError(f"augmentation supports 2D and 3D patches, not {dims}D")
    params = dict(_COMMON)
    params["rotation"] = [-math.pi, math.pi] if dims == 2 else [-_DEG30, _DEG30]
    params["mirror_axes"] = list(range(dims))
    return params


def _sample_around_one(rng: np.random.Generator, lo: float, hi: float) -> float:
    """nnU-Net's BGContrast draw: half the time from [lo, 1), else from [1, hi] (when lo < 1 < hi)."""
    if lo < 1 and rng.random() < 0.5:
        return float(rng.uniform(lo, 1.0))
    return float(rng.uniform(max(lo, 1.0), hi))


class TrainingAugmentation:
    """Random spatial + intensity augmentation of one patch, deterministic given an ``np.random.Generator``.

    ``params`` overrides :func:`default_params` key by key; set ``"rotation"``/``"scale"`` to ``None``,
    ``"mirror_axes"`` to ``[]`` or a switch (``"noise"``, ``"blur"``, ...) to ``False`` to turn a transform
    off. A switch may carry its range instead of ``True`` (``"gamma": [0.7, 1.5]``, ``"noise": 0.1`` for
    the largest noise std). ``patch_size`` is the output size (default: the input's size).
    """

    def __init__(self, dims: int, params: dict[str, Any] | None = None, patch_size: Sequence[int] | None = None):
        self.dims = int(dims)
        self.params = default_params(self.dims)
        unknown = sorted(set(params or {}) - set(self.params))
        if unknown:
            raise PlanError(f"unknown augmentation settings {unknown}", fix=f"use keys among {sorted(self.params)}")
        self.params.update(_normalise_switches(params or {}))
        bad_p = {k: v for k, v in self.params.items() if k.startswith("p_") and not 0.0 <= float(v) <= 1.0}
        if bad_p:
            raise PlanError(f"augmentation probabilities outside [0, 1]: {bad_p}")
        self.patch_size = tuple(int(p) for p in patch_size) if patch_size is not None else None
        if self.patch_size is not None and len(self.patch_size) != self.dims:
            raise PlanError(f"patch size {self.patch_size} is not {self.dims}D")
        self._rotation_ranges = self._parse_rotation(self.params["rotation"])
        bad_axes = [a for a in self.params["mirror_axes"] or [] if not 0 <= int(a) < self.dims]
        if bad_axes:
            raise PlanError(f"mirror axes {bad_axes} outside 0..{self.dims - 1}")

    def _parse_rotation(self, rotation: Any) -> list[tuple[float, float]] | None:
        if rotation is None or rotation is False:
            return None
        arr = np.asarray(rotation, dtype=float)
        n_angles = 1 if self.dims == 2 else 3
        if arr.shape == (2,):
            return [(float(arr[0]), float(arr[1]))] * n_angles
        if arr.shape == (n_angles, 2):
            return [(float(a), float(b)) for a, b in arr]
        raise PlanError(f"rotation {rotation!r} must be [lo, hi] radians or one [lo, hi] per rotation axis "
                        f"({n_angles})")

    # -- spatial -----------------------------------------------------------------------------------
    def draw_spatial(self, rng: np.random.Generator, patch_size: Sequence[int] | None = None) -> SpatialParams:
        """Draw rotation, scaling, mirroring (and elastic) for one patch."""
        p = self.params
        angles: tuple[float, ...] = ()
        if self._rotation_ranges is not None and rng.random() < p["p_rotation"]:
            angles = tuple(float(rng.uniform(lo, hi)) for lo, hi in self._rotation_ranges)
        scale = 1.0
        if p["scale"] is not None and p["scale"] is not False and rng.random() < p["p_scale"]:
            scale = float(rng.uniform(*p["scale"]))
        flips = tuple(int(a) for a in (p["mirror_axes"] or []) if rng.random() < p["p_mirror"])
        displacement = None
        if p["elastic"] and rng.random() < p["p_elastic"]:
            size = patch_size or self.patch_size
            if size is None:
                raise PlanError("elastic deformation needs the patch size",
                                fix="pass patch_size to TrainingAugmentation")
            displacement = elastic_displacement(size, p["elastic_sigma"], p["elastic_magnitude"], rng)
        matrix = affine_matrix(angles, scale, self.dims, flips) if (angles or scale != 1.0) else None
        return SpatialParams(matrix=matrix, flip_axes=flips, angles=angles, scale=scale, displacement=displacement)

    # -- intensity ---------------------------------------------------------------------------------
    def apply_intensity(self, img: torch.Tensor, rng: np.random.Generator, record: list | None = None) -> torch.Tensor:
        """Noise, blur, brightness, contrast, low resolution and the two gammas, in nnU-Net's order, in place."""
        p = self.params
        n_channels, spatial_dims = img.shape[0], img.ndim - 1
        if p["noise"] and rng.random() < p["p_noise"]:
            std = float(rng.uniform(*p["noise_std"]))
            generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            intensity.add_gaussian_noise_(img, std, generator)
            _note(record, "noise", std=std)
        if p["blur"] and rng.random() < p["p_blur"]:
            for c in range(n_channels):
                if rng.random() < p["p_blur_channel"]:
                    sigmas = [float(rng.uniform(*p["blur_sigma"])) for _ in range(spatial_dims)]
                    intensity.gaussian_blur_(img, c, sigmas)
                    _note(record, "blur", channel=c, sigmas=sigmas)
        if p["brightness"] and rng.random() < p["p_brightness"]:
            for c in range(n_channels):
                factor = _sample_around_one(rng, *p["brightness_range"])
                intensity.scale_brightness_(img, c, factor)
                _note(record, "brightness", channel=c, factor=factor)
        if p["contrast"] and rng.random() < p["p_contrast"]:
            for c in range(n_channels):
                factor = _sample_around_one(rng, *p["contrast_range"])
                intensity.adjust_contrast_(img, c, factor, preserve_range=True)
                _note(record, "contrast", channel=c, factor=factor)
        if p["low_resolution"] and rng.random() < p["p_low_resolution"]:
            for c in range(n_channels):
                if rng.random() < p["p_low_resolution_channel"]:
                    scale = float(rng.uniform(*p["low_resolution_scale"]))
                    intensity.simulate_low_resolution_(img, c, scale)
                    _note(record, "low_resolution", channel=c, scale=scale)
        if p["gamma"]:
            for invert, prob in ((True, p["p_gamma_inverted"]), (False, p["p_gamma"])):
                if rng.random() < prob:
                    for c in range(n_channels):
                        g = _sample_around_one(rng, *p["gamma_range"])
                        intensity.gamma_(img, c, g, invert=invert, retain_stats=True)
                        _note(record, "gamma", channel=c, gamma=g, inverted=invert)
        return img

    # -- whole sample ------------------------------------------------------------------------------
    def extract(self, image: ArrayLike, label: ArrayLike | None, center: Sequence[int], rng: np.random.Generator,
                patch_size: Sequence[int] | None = None, image_pad_value: float = 0.0, label_pad_value: int = 0,
                record: list | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cut an augmented patch centred on ``center`` straight out of a whole case (one resampling at most)."""
        size = tuple(patch_size or self.patch_size or ())
        if len(size) != self.dims:
            raise PlanError("TrainingAugmentation.extract needs a patch size", fix="pass patch_size")
        spatial = self.draw_spatial(rng, size)
        if record is not None:
            record.append(spatial.record())
        img, lbl = extract_patch(image, label, center, size, spatial, image_pad_value, label_pad_value)
        return self.apply_intensity(img, rng, record), lbl

    def augment(self, img: ArrayLike, lbl: ArrayLike | None = None, rng: np.random.Generator | None = None,
                record: list | None = None) -> tuple[ArrayLike, ArrayLike | None]:
        """Augment one (C, *spatial) patch (numpy or torch; returned as given), centre-cropping to ``patch_size``."""
        rng = rng if rng is not None else np.random.default_rng()
        spatial_shape = tuple(img.shape[1:])
        if len(spatial_shape) != self.dims:
            raise PlanError(f"patch of shape {tuple(img.shape)} is not (C, {self.dims} spatial axes)")
        size = self.patch_size or spatial_shape
        center = [s // 2 for s in spatial_shape]
        out_img, out_lbl = self.extract(img, lbl, center, rng, size, record=record)
        if isinstance(img, np.ndarray):
            return out_img.numpy(), (out_lbl.numpy() if out_lbl is not None else None)
        return out_img, out_lbl

    __call__ = augment


def _note(record: list | None, name: str, **values: Any) -> None:
    if record is not None:
        record.append({"name": name, **values})
