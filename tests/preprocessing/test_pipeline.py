"""Preprocessing on real images, and the exact way back to the original geometry."""
from __future__ import annotations

import numpy as np
import pytest

from medsight.io import read_image
from medsight.preprocessing.crop import crop, nonzero_bbox, paste
from medsight.preprocessing.normalize import normalize_channel
from medsight.preprocessing.pipeline import preprocess_image, restore_prediction


def _brats_case(shared_data):
    case = shared_data / "brats_examples/brats_2013_pat0004_1"
    img = read_image(case / "Flair_subtrMeanDivStd.nii.gz")
    brain = read_image(case / "brainmask.nii.gz").array > 0
    lab = read_image(case / "OTMultiClass.nii.gz")
    return img.with_array(img.array * brain), lab  # zero outside the brain, as skull-stripped MR is


@pytest.mark.parametrize("target_spacing", [None, [2.0, 2.0, 2.0], [1.3, 0.7, 2.5]])
def test_resample_identity_prediction_invert_equals_label(shared_data, target_spacing):
    img, lab = _brats_case(shared_data)
    plan = {"normalization": [{"scheme": "zscore"}], "crop_to_nonzero": True, "use_mask_for_norm": True,
            "target_spacing": target_spacing, "image_order": 3, "label_resampling": "nearest"}
    _, net_label, props = preprocess_image(img, plan, lab)
    if target_spacing is None:
        # identity prediction (the one-hot of the network-space label), mapped back: equal to the label
        onehot = np.stack([(net_label[0] == v) for v in range(5)]).astype(np.float32)
        back = restore_prediction(onehot, props, kind="probabilities")
        np.testing.assert_array_equal(np.argmax(back, 0), lab.array[0])
    restored = restore_prediction(net_label, props, kind="label")
    assert restored.shape[1:] == lab.spatial_shape
    agree = np.mean(restored[0] == lab.array[0])
    assert agree == 1.0 if target_spacing is None else agree > 0.98


def test_network_space_shape_follows_spacing(shared_data):
    img, lab = _brats_case(shared_data)
    plan = {"normalization": [{"scheme": "zscore"}], "crop_to_nonzero": True, "use_mask_for_norm": True,
            "target_spacing": [2.0, 2.0, 2.0]}
    arr, net_label, props = preprocess_image(img, plan, lab)
    cropped = props["cropped_shape"]
    assert list(arr.shape[1:]) == [round(c * s / 2.0) for c, s in zip(cropped, img.spacing)]
    assert net_label.shape[1:] == arr.shape[1:] and arr.dtype == np.float32
    same, _, _ = preprocess_image(img, {**plan, "target_spacing": None})
    inside = crop(img.array, [tuple(b) for b in props["bbox"]])[0] != 0
    brain = same[0][inside]  # z-scored inside the non-zero (brain) region, zero outside
    assert abs(brain.mean()) < 1e-3 and abs(brain.std() - 1) < 1e-3 and np.all(same[0][~inside] == 0)


def test_crop_and_paste_invert(shared_data):
    img, _ = _brats_case(shared_data)
    bbox = nonzero_bbox(img.array)
    assert all(b - a < s for (a, b), s in zip(bbox, img.spatial_shape))
    back = paste(crop(img.array, bbox), bbox, img.spatial_shape)
    np.testing.assert_array_equal(back, img.array)


def test_ct_normalisation_clips_then_zscores():
    x = np.array([[-2000.0, -100.0, 0.0, 50.0, 3000.0]])
    out = normalize_channel(x, {"scheme": "ct", "clip": [-100.0, 100.0], "mean": 0.0, "std": 50.0})
    np.testing.assert_allclose(out, [[-2.0, -2.0, 0.0, 1.0, 2.0]])
