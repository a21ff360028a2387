"""Patch sampling on a real BraTS crop: foreground share, padding, determinism, multi-scale and 2.5D views."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.augmentation import TrainingAugmentation
from medsight.errors import InputError
from medsight.sampling import (
    BatchLoader,
    PatchSampler,
    PatchSource,
    extract_multiscale,
    extract_orthogonal_planes,
    initial_patch_size,
    sample_class_locations,
)


@pytest.fixture(scope="module")
def locations(brats_crop):
    return sample_class_locations(brats_crop[1], max_per_class=500, seed=3)


def test_class_locations_point_at_their_class_and_respect_the_cap(brats_crop, locations):
    label = brats_crop[1][0]
    assert sorted(locations) == [1, 2, 3, 4]  # every tumour class of this case, background left out
    for cls, locs in locations.items():
        assert locs.shape[1] == 3 and 0 < len(locs) <= 500
        assert np.all(label[tuple(locs.T)] == cls)
        assert len(np.unique(locs, axis=0)) == len(locs)  # a subset, no repeats
    assert len(locations[1]) == min(500, int((label == 1).sum()))
    again = sample_class_locations(brats_crop[1], max_per_class=500, seed=3)
    assert all(np.array_equal(again[c], locations[c]) for c in locations)


def test_class_locations_skip_the_ignore_value():
    label = np.array([[[0, 1, 255], [1, 2, 255]]], dtype=np.uint8)
    locs = sample_class_locations(label, ignore_value=255)
    assert sorted(locs) == [1, 2]
    assert locs[1].tolist() == [[0, 1], [1, 0]]


def test_a_third_of_patches_is_forced_onto_tumour_with_classes_in_equal_turns(brats_crop, locations):
    image, label = brats_crop
    sampler = PatchSampler((32, 32, 32), oversample_foreground=1 / 3, rng=0)
    draws = 3000
    forced = {c: 0 for c in locations}
    for _ in range(draws):
        center, cls = sampler.draw_center(image.shape[1:], locations)
        assert np.all(center - 16 >= 0) and np.all(center + 16 <= np.array(image.shape[1:]))  # inside: no padding
        if cls is not None:
            forced[cls] += 1
            assert label[0][tuple(center)] == cls or _clipped(center, image.shape[1:], 32)
    share = sum(forced.values()) / draws
    assert abs(share - 1 / 3) < 0.035  # binomial sd 0.0086
    per_class = np.array(list(forced.values())) / sum(forced.values())
    assert np.all(np.abs(per_class - 0.25) < 0.05)  # the rare class 1 (1252 voxels) as often as oedema


def _clipped(center, shape, size):
    return bool(np.any(center == size // 2) or np.any(center == np.array(shape) - size + size // 2))


def test_round_robin_gives_each_class_its_turn(brats_crop, locations):
    sampler = PatchSampler((16, 16, 16), oversample_foreground=1.0, rng=0, class_choice="round_robin")
    classes = [sampler.draw_center(brats_crop[0].shape[1:], locations)[1] for _ in range(8)]
    assert classes == [1, 2, 3, 4, 1, 2, 3, 4]


def test_forced_patch_on_a_case_without_foreground_falls_back_to_random():
    sampler = PatchSampler((4, 4), oversample_foreground=1.0, rng=0)
    center, cls = sampler.draw_center((10, 10), {1: np.zeros((0, 2), np.int32)})
    assert cls is None and np.all((center >= 2) & (center <= 8))


def test_patch_sticking_out_of_the_image_is_padded(brats_crop):
    image, label = brats_crop
    sampler = PatchSampler((20, 20, 20), rng=0, label_pad_value=255, image_pad_value=-5.0)
    img, lbl = sampler.sample(image, label, center=(5, 0, 95))  # covers [-5, 15) x [-10, 10) x [85, 105)
    assert img.shape == (2, 20, 20, 20) and lbl.shape == (1, 20, 20, 20)
    assert np.all(img[:, :5] == -5.0) and np.all(img[:, :, :10] == -5.0) and np.all(img[:, :, :, 11:] == -5.0)
    assert np.all(lbl[:, :5] == 255) and np.all(lbl[:, :, :, 11:] == 255)
    np.testing.assert_array_equal(img[:, 5:, 10:, :11], image[:, 0:15, 0:10, 85:96])
    np.testing.assert_array_equal(lbl[:, 5:, 10:, :11], label[:, 0:15, 0:10, 85:96])


def test_image_smaller_than_the_patch_is_centred_and_padded():
    image = np.arange(1 * 4 * 6, dtype=np.float32).reshape(1, 4, 6) + 1
    img, lbl = PatchSampler((8, 8), rng=0).sample(image)
    assert lbl is None and img.shape == (1, 8, 8)
    np.testing.assert_array_equal(img[0, 2:6, 1:7], image[0])
    assert img.sum() == image.sum()  # the rest is padding (0)


def test_crop_size_larger_than_patch_is_centred_on_the_same_voxel(brats_crop, locations):
    image, label = brats_crop
    sampler = PatchSampler((16, 16, 16), rng=0, crop_size=(24, 24, 24))
    img, lbl = sampler.sample(image, label, center=(60, 60, 48))
    np.testing.assert_array_equal(img, image[:, 48:72, 48:72, 36:60])


def _cases(brats_crop, locations):
    image, label = brats_crop
    return [PatchSource(image, label, locations), (image[:, :80], label[:, :80], None)]


def test_batches_are_deterministic_in_seed_epoch_and_index_with_or_without_threads(brats_crop, locations):
    aug = TrainingAugmentation(3, {"p_rotation": 0.5, "p_scale": 0.5})
    make = lambda threads: BatchLoader(_cases(brats_crop, locations), (24, 24, 24), batch_size=2, augmentation=aug,
                                       seed=7, num_threads=threads)
    serial = list(make(0).iterate(epoch=3, num_batches=4))
    threaded = list(make(2).iterate(epoch=3, num_batches=4))
    for (a_img, a_lbl), (b_img, b_lbl) in zip(serial, threaded):
        assert a_img.shape == (2, 2, 24, 24, 24) and a_lbl.shape == (2, 1, 24, 24, 24)
        assert a_img.dtype == torch.float32 and a_lbl.dtype == torch.int16
        assert torch.equal(a_img, b_img) and torch.equal(a_lbl, b_lbl)
    resumed = make(0).batch(epoch=3, index=2)  # resume mid-epoch: the same batch
    assert torch.equal(resumed[0], serial[2][0])
    other_epoch = make(0).batch(epoch=4, index=2)
    assert not torch.equal(other_epoch[0], serial[2][0])


def test_batch_tail_rule_forces_the_last_third_of_each_batch(brats_crop, locations):
    image, label = brats_crop
    loader = BatchLoader([PatchSource(image, label, locations)], (16, 16, 16), batch_size=3, seed=0)
    for index in range(5):
        record: list = []
        images, labels = loader.batch(0, index, record=record)
        assert [r["class"] is not None for r in record] == [False, False, True]
        assert (labels[2] == record[2]["class"]).any()  # the forced patch holds the chosen class


def test_batch_without_augmentation_is_the_plain_crop(brats_crop, locations):
    image, label = brats_crop
    loader = BatchLoader([PatchSource(image, label, locations)], (16, 16, 16), batch_size=2, seed=1,
                         oversample_mode="probabilistic")
    record: list = []
    images, labels = loader.batch(0, 0, record=record)
    for i, r in enumerate(record):
        lo = np.array(r["center"]) - 8
        window = tuple(slice(a, a + 16) for a in lo)
        np.testing.assert_array_equal(images[i].numpy(), image[(slice(None), *window)])
        np.testing.assert_array_equal(labels[i].numpy(), label[(slice(None), *window)])


def test_loader_rejects_bad_settings(brats_crop):
    image, label = brats_crop
    with pytest.raises(InputError):
        BatchLoader([], (8, 8, 8))
    with pytest.raises(InputError):
        BatchLoader([(image, label, None)], (8, 8, 8), oversample_mode="sometimes")
    with pytest.raises(InputError):
        PatchSampler((8, 8, 8), oversample_foreground=1.5)
    with pytest.raises(InputError):
        BatchLoader([(image, label, None), (image[:1], label, None)], (8, 8, 8))


def test_multiscale_views_are_block_means_of_growing_regions(brats_crop):
    image = brats_crop[0]
    center = (60, 60, 48)
    views = extract_multiscale(image, center, (8, 8, 8), scales=(1, 2, 4))
    assert views.shape == (3, 2, 8, 8, 8) and views.dtype == np.float32
    np.testing.assert_array_equal(views[0], image[:, 56:64, 56:64, 44:52])
    region = image[:, 52:68, 52:68, 40:56]  # 16^3 around the same centre
    expected = region.reshape(2, 8, 2, 8, 2, 8, 2).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(views[1], expected, rtol=1e-5, atol=1e-5)
    region4 = image[:, 44:76, 44:76, 32:64]
    np.testing.assert_allclose(views[2], region4.reshape(2, 8, 4, 8, 4, 8, 4).mean(axis=(2, 4, 6)), atol=1e-5)


def test_multiscale_pads_beyond_the_image():
    image = np.ones((1, 10, 10), np.float32)
    views = extract_multiscale(image, (0, 0), (4, 4), scales=(1, 2))
    assert views.shape == (2, 1, 4, 4)
    assert views[0, 0, 0, 0] == 0 and views[0, 0, 3, 3] == 1  # [-2, 2): half padding
    assert views[1, 0, 0, 0] == 0 and views[1, 0, 3, 3] == 1 and views[1, 0, 1, 1] == 0.0


def test_orthogonal_planes_cut_through_the_point(brats_crop):
    image = brats_crop[0]
    planes = extract_orthogonal_planes(image, (60, 50, 40), 16)
    assert planes.shape == (3, 2, 16, 16)
    np.testing.assert_array_equal(planes[0], image[:, 60, 42:58, 32:48])
    np.testing.assert_array_equal(planes[1], image[:, 52:68, 50, 32:48])
    np.testing.assert_array_equal(planes[2], image[:, 52:68, 42:58, 40])
    edge = extract_orthogonal_planes(image, (0, 0, 0), 16)
    assert np.all(edge[2, :, :8, :] == 0) and np.array_equal(edge[2, :, 8:, 8:], image[:, :8, :8, 0])


def test_initial_patch_size_covers_every_rotation_and_scale():
    assert initial_patch_size((64, 48)) == (64, 48)
    # 2D, any angle: the diagonal bounds both axes
    diagonal = math.ceil(math.hypot(64, 48))
    assert initial_patch_size((64, 48), (-math.pi, math.pi)) == (diagonal, diagonal)
    # 45 degrees exactly on a square: side * sqrt(2)
    assert initial_patch_size((40, 40), (math.pi / 4, math.pi / 4)) == (math.ceil(40 * math.sqrt(2)),) * 2
    assert initial_patch_size((40, 40), None, (0.7, 1.25)) == (50, 50)
    size3 = initial_patch_size((96, 96, 96), (-math.pi / 6, math.pi / 6))
    assert all(96 * (math.cos(math.pi / 6) + math.sin(math.pi / 6)) <= s <= 96 * math.sqrt(3) for s in size3)


@pytest.fixture()
def cached_cases(tmp_path, brats_crop):
    """Two cases written in the preprocessing cache's layout (npy image, _seg.npy, _locations.npz)."""
    cache = pytest.importorskip("medsight.preprocessing.cache")
    image, label = brats_crop
    for cid, sl in (("a", slice(0, 120)), ("b", slice(20, 100))):
        np.save(tmp_path / f"{cid}.npy", np.ascontiguousarray(image[:, sl]))
        np.save(tmp_path / f"{cid}_seg.npy", np.ascontiguousarray(label[:, sl]))
        locs = sample_class_locations(label[:, sl], max_per_class=200, seed=0)
        np.savez(tmp_path / f"{cid}_locations.npz", **{str(k): v for k, v in locs.items()})
    return cache.CachedCases(tmp_path, ["a", "b"])


def test_segmentation_batches_follow_the_plan_and_split_work_between_processes(cached_cases):
    plan = {"patch_size": [24, 24, 16], "batch_size": 3, "sampler": {"oversample_foreground": 0.33, "threads": 0},
            "augmentation": {"rotation": [-0.52, 0.52], "scale": [0.7, 1.4], "mirror_axes": [0, 1, 2],
                             "elastic": False, "gamma": [0.7, 1.5], "noise": 0.1, "blur": [0.5, 1.0],
                             "brightness": [0.75, 1.25], "contrast": [0.75, 1.25], "low_resolution": [0.5, 1.0]}}
    from medsight.sampling import segmentation_batches

    single = list(segmentation_batches(cached_cases, plan, (4, 2), steps=4))
    assert len(single) == 4
    for images, labels in single:
        assert images.shape == (3, 2, 24, 24, 16) and labels.shape == (3, 1, 24, 24, 16)
        assert set(torch.unique(labels).tolist()) <= {0, 1, 2, 3, 4}
        assert (labels[2] > 0).any()  # nnU-Net's rule: the last third of the batch holds foreground
    again = list(segmentation_batches(cached_cases, plan, (4, 2), steps=4))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, again))
    rank0 = list(segmentation_batches(cached_cases, plan, (4, 2), steps=2, rank=0, world=2))
    rank1 = list(segmentation_batches(cached_cases, plan, (4, 2), steps=2, rank=1, world=2))
    # two processes share out the single-process batches: rank r takes batches r, r + 2, ...
    assert torch.equal(rank0[1][0], single[2][0]) and torch.equal(rank1[0][0], single[1][0])
    threaded = list(segmentation_batches(cached_cases, {**plan, "sampler": {"threads": 2}}, (4, 2), steps=4))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, threaded))
