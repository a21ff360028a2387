"""A 3D CPU plan whose patch would see a small part of the image works at a coarser spacing (nnU-Net's 3d_lowres)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import write_brats_cases

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.tasks.segmentation import (LOWRES_COVERAGE, LOWRES_MAX_FACTOR, PATCH_BUDGET, SegmentationTask,
                                         lowres_spacing, patch_size_rule)


def coverage(shape: list[float], spacing: list[float], max_voxels: int) -> float:
    patch = patch_size_rule(shape, spacing, max_voxels)
    return float(np.prod(np.minimum(patch, shape)) / np.prod(shape))


def test_brats_sized_volume_is_coarsened_until_a_patch_covers_a_quarter():
    max_vox = PATCH_BUDGET[("cpu", 3)][0]
    assert coverage([240, 240, 155], [1, 1, 1], max_vox) < LOWRES_COVERAGE  # why the rule exists
    coarse = lowres_spacing([240, 240, 155], [1.0, 1.0, 1.0], max_vox)
    assert coarse is not None and coarse[0] == coarse[1] == coarse[2]  # isotropic data stays isotropic
    shape = [240 / coarse[0], 240 / coarse[1], 155 / coarse[2]]
    assert coverage(shape, coarse, max_vox) >= LOWRES_COVERAGE
    # the smallest such spacing: one 3 % step finer still falls short
    finer = [s / 1.03 for s in coarse]
    assert coverage([240 / finer[0], 240 / finer[1], 155 / finer[2]], finer, max_vox) < LOWRES_COVERAGE


def test_small_volumes_keep_their_spacing():
    assert lowres_spacing([100, 100, 80], [1.0, 1.0, 1.0], PATCH_BUDGET[("cpu", 3)][0]) is None


def test_anisotropic_volume_coarsens_the_fine_axes_first_and_respects_the_cap():
    max_vox = PATCH_BUDGET[("cpu", 3)][0]
    coarse = lowres_spacing([512, 512, 60], [0.7, 0.7, 5.0], max_vox)
    assert coarse is not None
    assert coarse[2] == pytest.approx(5.0)  # thick slices untouched while the in-plane axes catch up
    assert coarse[0] > 0.7 * 2
    huge = lowres_spacing([2000, 2000, 2000], [1.0, 1.0, 1.0], max_vox)
    assert huge == pytest.approx([LOWRES_MAX_FACTOR] * 3)  # stops at the cap even if still short


def test_only_a_3d_cpu_plan_goes_low_resolution(shared_data, tmp_path):
    src = write_brats_cases(tmp_path / "brats", shared_data, n=2)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="cases", n_folds=2, progress=False)
    manifest, fp = Manifest.load(ds), api.fingerprint(ds, progress=False)
    task = SegmentationTask()
    crops = task.plan_rules(manifest, fp, torch.device("cpu"), measure=False)
    assert "target_spacing" not in crops and not crops.get("lowres")  # 40x40x24 crops fit a patch
    big = {**fp, "median_shape": [240.0, 240.0, 155.0]}
    cpu = task.plan_rules(manifest, big, torch.device("cpu"), measure=False)
    gpu = task.plan_rules(manifest, big, torch.device("cuda"), measure=False)
    assert cpu["lowres"] is True and cpu["target_spacing"][0] > 1.5
    shape = [m * s / t for m, s, t in zip(big["median_shape"], fp["median_spacing"], cpu["target_spacing"])]
    assert np.prod(np.minimum(cpu["patch_size"], shape)) / np.prod(shape) >= LOWRES_COVERAGE
    assert "target_spacing" not in gpu and not gpu.get("lowres")
