"""Field-of-view scaling: images without a physical spacing, of a canonical-view set, meet the network at its
scale (a 256^2 chest X-ray after training on 512^2 ones), and predictions go back to each image's own grid."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.io import Image
from medsight.preprocessing.cache import preprocessing_hash
from medsight.preprocessing.pipeline import (field_of_view_factor, preprocess_image, restore_prediction,
                                             target_shape)

PLAN = {"normalization": [{"scheme": "zscore"}], "crop_to_nonzero": False, "use_mask_for_norm": False,
        "target_spacing": None, "image_order": 3, "label_resampling": "onehot"}


def test_factor_matches_the_pixel_count_and_keeps_proportions():
    assert field_of_view_factor((256, 256), [512, 512]) == pytest.approx(2.0)
    assert field_of_view_factor((1024, 1024), [512, 512]) == pytest.approx(0.5)
    fov = {**PLAN, "field_of_view_shape": [512, 512]}
    assert target_shape(fov, (200, 300), (1.0, 1.0)) == (418, 627)  # one factor, sqrt(512^2 / 60000) = 2.09
    assert target_shape(fov, (512, 512), (1.0, 1.0)) == (512, 512)
    # a cropped part scales by the factor of its whole image
    assert target_shape(fov, (100, 80), (1.0, 1.0), full_shape=(256, 256)) == (200, 160)
    assert target_shape(PLAN, (256, 256), (1.0, 1.0)) == (256, 256)


def test_only_a_plan_that_sets_it_changes_the_cache_key():
    assert preprocessing_hash(PLAN) == preprocessing_hash({**PLAN, "field_of_view_shape": None})
    assert preprocessing_hash(PLAN) != preprocessing_hash({**PLAN, "field_of_view_shape": [512, 512]})


def test_a_half_size_radiograph_is_scaled_up_and_its_prediction_comes_back(shared_data):
    folder = shared_data / "shenzhen_cxr" / "inputs"
    pil = PILImage.open(folder / "train_images" / "CHNCXR_0001_0.png")
    half = np.asarray(pil.resize((256, 256), PILImage.BILINEAR), np.float32)[None]
    lung = np.asarray(PILImage.open(folder / "train_masks" / "CHNCXR_0001_0_mask.png")) >= 128
    lung_half = np.asarray(PILImage.fromarray(lung.astype(np.uint8) * 255).resize((256, 256), PILImage.BILINEAR)) >= 128
    plan = {**PLAN, "field_of_view_shape": [512, 512]}
    array, label, props = preprocess_image(Image(half), plan, Image(lung_half[None].astype(np.int16)))
    assert array.shape == (1, 512, 512) and label.shape == (1, 512, 512)
    # the scaled-up label is the full-size reference up to the borders lost by halving
    assert np.mean((label[0] > 0) == lung) > 0.99
    back = restore_prediction(label, props, kind="label")
    assert back.shape == (1, 256, 256) and np.mean((back[0] > 0) == lung_half) > 0.99


def test_post_processing_sizes_are_counted_in_pixels_of_the_reference_field_of_view():
    from medsight.tasks.segmentation import size_unit

    fov = {**PLAN, "field_of_view_shape": [512, 512]}
    assert size_unit(fov, (256, 256), (1.0, 1.0)) == pytest.approx(4.0)  # a pixel there covers four reference ones
    assert size_unit(fov, (512, 512), (1.0, 1.0)) == pytest.approx(1.0)
    assert size_unit(PLAN, (256, 256), (0.5, 0.8)) == pytest.approx(0.4)  # physical, from the spacing
