"""Spatial augmentation on a real BraTS crop: identity, mirroring, rotation by 90 degrees, labels kept."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from medsight.augmentation import SpatialParams, TrainingAugmentation, affine_matrix, crop_with_padding, extract_patch
from medsight.augmentation.spatial import elastic_displacement, rotation_matrix

ALL_OFF = {"rotation": None, "scale": None, "mirror_axes": [], "noise": False, "blur": False, "brightness": False,
           "contrast": False, "low_resolution": False, "gamma": False}


def test_identity_parameters_give_the_centre_crop_exactly(brats_crop):
    image, label = brats_crop
    aug = TrainingAugmentation(3, ALL_OFF, patch_size=(64, 64, 48))
    img, lbl = aug(image, label, np.random.default_rng(0))
    assert isinstance(img, np.ndarray) and img.dtype == np.float32
    np.testing.assert_array_equal(img, image[:, 28:92, 28:92, 24:72])
    np.testing.assert_array_equal(lbl, label[:, 28:92, 28:92, 24:72])


def test_identity_matrix_through_the_resampling_path_is_the_crop(brats_crop):
    image, label = brats_crop
    near_identity = np.eye(3) + np.array([[0, 1e-12, 0], [0, 0, 0], [0, 0, 0]])  # not diagonal: grid_sample path
    img, lbl = extract_patch(image, label, (60, 60, 48), (32, 32, 32), SpatialParams(matrix=near_identity))
    np.testing.assert_allclose(img.numpy(), image[:, 44:76, 44:76, 32:64], atol=1e-4)
    np.testing.assert_array_equal(lbl.numpy(), label[:, 44:76, 44:76, 32:64])


@pytest.mark.parametrize("flip_axes", [(0,), (2,), (0, 1, 2)])
def test_mirroring_a_real_crop_equals_np_flip(brats_crop, flip_axes):
    image, label = brats_crop
    dims = [a + 1 for a in flip_axes]
    expected_img = np.flip(image[:, 30:90, 30:90, 20:76], dims)
    expected_lbl = np.flip(label[:, 30:90, 30:90, 20:76], dims)
    by_slicing = extract_patch(image, label, (60, 60, 48), (60, 60, 56), SpatialParams(flip_axes=flip_axes))
    by_matrix = extract_patch(image, label, (60, 60, 48), (60, 60, 56),
                              SpatialParams(matrix=affine_matrix(None, 1.0, 3, flip_axes), flip_axes=flip_axes))
    for img, lbl in (by_slicing, by_matrix):
        np.testing.assert_array_equal(img.numpy(), expected_img)
        np.testing.assert_array_equal(lbl.numpy(), expected_lbl)


def test_pipeline_with_certain_mirroring_flips_every_axis(brats_crop):
    image, label = brats_crop
    aug = TrainingAugmentation(3, {**ALL_OFF, "mirror_axes": [0, 1, 2], "p_mirror": 1.0})
    img, lbl = aug(torch.from_numpy(image), torch.from_numpy(label), np.random.default_rng(1))
    assert isinstance(img, torch.Tensor)
    np.testing.assert_array_equal(img.numpy(), np.flip(image, (1, 2, 3)))
    np.testing.assert_array_equal(lbl.numpy(), np.flip(label, (1, 2, 3)))


@pytest.mark.parametrize("axes, angles", [((1, 2), [0, 0, -math.pi / 2]), ((2, 3), [-math.pi / 2, 0, 0]),
                                          ((1, 3), [0, math.pi / 2, 0])])
def test_rotation_by_90_degrees_through_the_affine_path_equals_rot90(brats_crop, axes, angles):
    image, label = brats_crop
    cube = np.ascontiguousarray(image[:, 40:80, 40:80, 28:68])  # 40^3: rotation about its centre maps the grid
    cube_lbl = np.ascontiguousarray(label[:, 40:80, 40:80, 28:68])
    params = SpatialParams(matrix=affine_matrix(angles, 1.0, 3), angles=tuple(angles))
    img, lbl = extract_patch(cube, cube_lbl, (20, 20, 20), (40, 40, 40), params)
    np.testing.assert_allclose(img.numpy(), np.rot90(cube, 1, axes=axes), atol=1e-4)
    np.testing.assert_array_equal(lbl.numpy(), np.rot90(cube_lbl, 1, axes=axes))


def test_2d_rotation_by_90_degrees_equals_rot90():
    rng = np.random.default_rng(0)
    square = rng.normal(size=(3, 17, 17)).astype(np.float32)  # odd size: centre on a voxel
    img, _ = extract_patch(square, None, (8, 8), (17, 17), SpatialParams(matrix=rotation_matrix([math.pi / 2])))
    np.testing.assert_allclose(img.numpy(), np.rot90(square, -1, axes=(1, 2)), atol=1e-4)


def test_labels_stay_in_the_label_set_after_rotation_and_scaling(brats_crop):
    image, label = brats_crop
    values = set(np.unique(label).tolist())
    rng = np.random.default_rng(0)
    for _ in range(4):
        angles = rng.uniform(-0.5, 0.5, 3)
        params = SpatialParams(matrix=affine_matrix(angles, rng.uniform(0.7, 1.4), 3), angles=tuple(angles))
        img, lbl = extract_patch(image, label, (60, 60, 48), (48, 48, 48), params, label_pad_value=0)
        assert lbl.dtype == torch.uint8
        assert set(torch.unique(lbl).tolist()) <= values
        assert len(set(torch.unique(lbl).tolist())) >= 3  # the tumour is still there, not wiped out
        assert torch.isfinite(img).all()


def test_rotation_outside_the_image_pads_image_and_label(brats_crop):
    image, label = brats_crop
    params = SpatialParams(matrix=affine_matrix([0.3, 0.2, 0.1], 1.0, 3))
    img, lbl = extract_patch(image, label, (0, 0, 0), (32, 32, 32), params, label_pad_value=255)
    assert lbl[0, 0, 0, 0] == 255 and img[:, 0, 0, 0].abs().max() == 0
    assert lbl[0, 31, 31, 31] != 255  # the far corner is inside the image


def test_scaling_covers_a_larger_region_with_the_same_centre():
    grid = np.zeros((1, 64, 64), np.float32)
    grid[0, 16:48, 16:48] = 1.0  # a 32-voxel square in the middle
    img, _ = extract_patch(grid, None, (32, 32), (32, 32), SpatialParams(matrix=np.diag([2.0, 2.0]), scale=2.0))
    inner = img[0].numpy()
    assert inner[16, 16] == 1 and inner[0, 0] == 0  # 64 voxels seen: the square fills the middle half
    assert abs(inner.mean() - 0.25) < 0.03


def test_memmap_input_is_read_without_copying_or_warnings(tmp_path, brats_crop):
    image, label = brats_crop
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "lbl.npy", label)
    img_mm = np.load(tmp_path / "img.npy", mmap_mode="r")
    lbl_mm = np.load(tmp_path / "lbl.npy", mmap_mode="r")
    params = SpatialParams(matrix=affine_matrix([0.2, -0.1, 0.3], 1.1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_disk = extract_patch(img_mm, lbl_mm, (60, 60, 48), (32, 32, 32), params)
    in_memory = extract_patch(image, label, (60, 60, 48), (32, 32, 32), params)
    assert torch.equal(from_disk[0], in_memory[0]) and torch.equal(from_disk[1], in_memory[1])


def test_fortran_ordered_label_gives_the_same_patch(brats_crop):
    image, label = brats_crop
    params = SpatialParams(matrix=affine_matrix([0.4, 0.0, -0.2], 0.9, 3))
    c_order = extract_patch(image, label, (60, 60, 48), (24, 24, 24), params)[1]
    f_order = extract_patch(image, np.asfortranarray(label), (60, 60, 48), (24, 24, 24), params)[1]
    assert torch.equal(c_order, f_order)


def test_crop_with_padding_mirrors_inside_the_padded_frame():
    array = np.arange(6, dtype=np.int16).reshape(1, 6)
    out = crop_with_padding(array, [-2], [5], pad_value=-1, flip_axes=(0,))
    assert out.tolist() == [[2, 1, 0, -1, -1]]  # [-2, 3) = [-1, -1, 0, 1, 2], reversed


def test_elastic_deformation_is_smooth_and_keeps_labels(brats_crop):
    image, label = brats_crop
    field = elastic_displacement((32, 32, 32), sigma=8, magnitude=2.0, rng=np.random.default_rng(0))
    assert field.shape == (3, 32, 32, 32)
    # smooth: neighbours move alike (white noise would give a mean step of ~1.1 standard deviations)
    assert float(field.diff(dim=1).abs().mean()) < 0.2 * float(field.std())
    assert 0.5 < float(field.std()) < 4.0  # about the asked magnitude (2 voxels)
    aug = TrainingAugmentation(3, {**ALL_OFF, "elastic": True, "p_elastic": 1.0}, patch_size=(32, 32, 32))
    img, lbl = aug(image, label, np.random.default_rng(2))
    assert img.shape == (2, 32, 32, 32) and set(np.unique(lbl)) <= set(np.unique(label))
    assert not np.array_equal(img, image[:, 44:76, 44:76, 32:64])


@pytest.mark.parametrize("scale", [0.75, 1.25])
def test_fast_scaling_path_equals_general_resampling(brats_crop, scale):
    image, label = brats_crop
    diagonal = np.diag([scale, scale, -scale])  # with a mirrored axis: the separable resize path
    general = diagonal.copy()
    general[0, 1] = 1e-7  # not diagonal: the grid_sample path
    fast = extract_patch(image, label, (60, 60, 48), (32, 32, 32), SpatialParams(matrix=diagonal))
    slow = extract_patch(image, label, (60, 60, 48), (32, 32, 32), SpatialParams(matrix=general))
    np.testing.assert_allclose(fast[0].numpy(), slow[0].numpy(), atol=1e-3)
    agree = float((fast[1] == slow[1]).float().mean())
    assert agree > 0.99  # nearest-neighbour ties may fall either way on a few voxels
