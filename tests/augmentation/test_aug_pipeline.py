"""TrainingAugmentation: plan dict, probabilities, determinism and records."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.augmentation import TrainingAugmentation, default_params
from medsight.errors import PlanError


def test_defaults_are_nnunets():
    p3, p2 = default_params(3), default_params(2)
    assert p3["rotation"] == pytest.approx([-math.pi / 6, math.pi / 6])
    assert p2["rotation"] == pytest.approx([-math.pi, math.pi])
    assert p3["mirror_axes"] == [0, 1, 2] and p2["mirror_axes"] == [0, 1]
    assert (p3["p_rotation"], p3["p_scale"], p3["scale"]) == (0.2, 0.2, [0.7, 1.4])
    assert (p3["p_noise"], p3["p_blur"], p3["p_brightness"], p3["p_contrast"]) == (0.1, 0.2, 0.15, 0.15)
    assert (p3["p_low_resolution"], p3["p_gamma_inverted"], p3["p_gamma"]) == (0.25, 0.1, 0.3)
    assert p3["elastic"] is False


def test_bad_plan_settings_are_refused():
    with pytest.raises(PlanError, match="unknown augmentation settings"):
        TrainingAugmentation(3, {"rotate": [0, 1]})
    with pytest.raises(PlanError):
        TrainingAugmentation(3, {"rotation": [0, 1, 2]})
    with pytest.raises(PlanError):
        TrainingAugmentation(2, {"mirror_axes": [2]})
    with pytest.raises(PlanError):
        TrainingAugmentation(4)
    with pytest.raises(PlanError, match="probabilities"):
        TrainingAugmentation(3, {"p_gamma": 1.5})


def test_switches_may_carry_their_ranges_as_plans_write_them():
    aug = TrainingAugmentation(3, {"gamma": [0.8, 1.2], "noise": 0.05, "blur": False, "contrast": [0.9, 1.1]})
    p = aug.params
    assert p["gamma"] is True and p["gamma_range"] == [0.8, 1.2]
    assert p["noise"] is True and p["noise_std"] == [0.0, 0.05]
    assert p["blur"] is False and p["contrast_range"] == [0.9, 1.1]
    assert TrainingAugmentation(3, {"noise": 0}).params["noise"] is False
    with pytest.raises(PlanError):
        TrainingAugmentation(3, {"gamma": 1.2})
    with pytest.raises(PlanError):
        TrainingAugmentation(3, {"blur": [0.5, 1.0, 2.0]})


def test_same_generator_same_output_and_record(brats_crop):
    image, label = brats_crop
    aug = TrainingAugmentation(3, {"p_rotation": 1.0, "p_noise": 1.0, "p_gamma": 1.0}, patch_size=(32, 32, 32))
    rec_a: list = []
    rec_b: list = []
    a = aug(image, label, np.random.default_rng(11), record=rec_a)
    b = aug(image, label, np.random.default_rng(11), record=rec_b)
    c = aug(image, label, np.random.default_rng(12))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and rec_a == rec_b
    assert not np.array_equal(a[0], c[0])
    names = [r["name"] for r in rec_a]
    assert names[0] == "spatial" and "noise" in names and "gamma" in names
    assert len(rec_a[0]["angles"]) == 3 and all(abs(t) <= math.pi / 6 for t in rec_a[0]["angles"])


def test_transforms_fire_at_their_probabilities():
    aug = TrainingAugmentation(2, {"noise": False, "blur": False, "low_resolution": False}, patch_size=(8, 8))
    img = np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32)
    counts = {"rotation": 0, "scale": 0, "gamma": 0, "brightness": 0}
    n = 2000
    rng = np.random.default_rng(1)
    for _ in range(n):
        record: list = []
        aug(img, None, rng, record=record)
        counts["rotation"] += bool(record[0]["angles"])
        counts["scale"] += record[0]["scale"] != 1.0
        counts["gamma"] += any(r["name"] == "gamma" and not r["inverted"] for r in record)
        counts["brightness"] += any(r["name"] == "brightness" for r in record)
    for name, p in (("rotation", 0.2), ("scale", 0.2), ("gamma", 0.3), ("brightness", 0.15)):
        assert abs(counts[name] / n - p) < 0.04, name  # binomial sd <= 0.011


def test_switching_everything_off_leaves_the_patch_alone(brats_crop):
    image, label = brats_crop
    off = {"rotation": None, "scale": None, "mirror_axes": [], "noise": False, "blur": False, "brightness": False,
           "contrast": False, "low_resolution": False, "gamma": False}
    aug = TrainingAugmentation(3, off)
    crop = torch.from_numpy(image[:, :24, :24, :24].copy())
    out, lbl = aug(crop, None, np.random.default_rng(0))
    assert lbl is None and torch.equal(out, crop) and out.data_ptr() != crop.data_ptr()  # a copy, input kept


def test_2d_augmentation_runs_on_a_real_slice(brats_crop):
    image, label = brats_crop
    slice_img, slice_lbl = image[:, :, :, 40], label[:, :, :, 40]
    aug = TrainingAugmentation(2, {"p_rotation": 1.0, "p_scale": 1.0}, patch_size=(64, 64))
    img, lbl = aug(slice_img, slice_lbl, np.random.default_rng(0))
    assert img.shape == (2, 64, 64) and lbl.shape == (1, 64, 64)
    assert set(np.unique(lbl)) <= set(np.unique(slice_lbl))


def test_extract_needs_a_patch_size(brats_crop):
    with pytest.raises(PlanError):
        TrainingAugmentation(3).extract(brats_crop[0], None, (10, 10, 10), np.random.default_rng(0))
