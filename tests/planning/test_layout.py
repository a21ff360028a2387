"""Where the foreground sits: coarse layouts, their consistency across cases, mirror symmetry, and the
augmentation rule that reads them (real Shenzhen lung and DRIVE vessel masks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medsight.planning.layout import coarse_layout, layout_summary
from medsight.tasks.segmentation import CANONICAL_ROTATION_2D, augmentation_rule, field_of_view_rule


def _masks(folder, n: int) -> list[np.ndarray]:
    files = sorted(folder.iterdir())[:n]
    return [(np.asarray(PILImage.open(f).convert("L")) > 127).astype(np.int16) for f in files]


def test_coarse_layout_is_the_label_fraction_of_each_cell():
    label = np.zeros((64, 48), np.int16)
    label[:32, :24] = 1  # the top-left quarter
    label[0, 47] = 2  # one pixel of another label
    grid = coarse_layout(label, [1, 2], grid=16)
    assert grid.shape == (2, 16, 16)
    assert grid[0, :8, :8].min() == 1.0 and grid[0, 8:].max() == 0.0 and grid[0, :, 8:].max() == 0.0
    assert grid[1, 0, 15] == pytest.approx(1 / 12, abs=1e-3)  # a 4 x 3 cell holds one pixel (float16)
    assert grid[0].mean() == pytest.approx(0.25)


def test_coarse_layout_counts_every_label_in_one_pass_as_cell_means():
    """Uneven cells (30 x 23 x 17 into 4 per axis) and several labels against plain loops over the cells."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 6, size=(30, 23, 17)).astype(np.int16)
    grid = coarse_layout(label, [2, 5, 3], grid=4)
    assert coarse_layout(label, [2]).shape == (1, 8, 8, 8)  # 3D's default grid is coarser than 2D's 16
    edges = [np.linspace(0, n, 5).round().astype(int) for n in label.shape]
    for li, v in enumerate([2, 5, 3]):
        for i in range(4):
            for j in range(4):
                for k in range(4):
                    cell = label[edges[0][i]:edges[0][i + 1], edges[1][j]:edges[1][j + 1], edges[2][k]:edges[2][k + 1]]
                    assert grid[li, i, j, k] == pytest.approx(np.mean(cell == v), abs=1e-3)


def test_coarse_layout_of_a_real_mask_is_its_block_means(shared_data):
    lung = _masks(shared_data / "shenzhen_cxr" / "inputs" / "train_masks", 1)[0]  # 512 x 512
    np.testing.assert_allclose(coarse_layout(lung, [1])[0], lung.reshape(16, 32, 16, 32).mean((1, 3)), atol=1e-3)


def test_coarse_layout_of_an_axis_shorter_than_the_grid_repeats_it():
    label = np.zeros((4, 5, 40), np.int16)
    label[:2] = 1
    grid = coarse_layout(label, [1], grid=8)
    assert grid.shape == (1, 8, 8, 8)
    assert grid[0, :4].min() == 1.0 and grid[0, 4:].max() == 0.0


def test_lungs_are_consistent_and_mirror_left_right_not_up_down(shared_data):
    lungs = _masks(shared_data / "shenzhen_cxr" / "inputs" / "train_masks", 6)
    summary = layout_summary([coarse_layout(m, [1]) for m in lungs])
    assert summary["consistency"] > 0.6
    up_down, left_right = summary["flip_overlap"]
    assert left_right > 0.6 > up_down


def test_vessels_are_not_consistent(shared_data):
    vessels = _masks(shared_data / "drive" / "training" / "1st_manual", 6)
    assert layout_summary([coarse_layout(m, [1]) for m in vessels])["consistency"] < 0.2


def test_a_one_sided_label_is_not_mirror_symmetric(shared_data):
    """Left and right lung as two labels: the union mirrors onto itself, each label onto the other."""
    cases = []
    for m in _masks(shared_data / "shenzhen_cxr" / "inputs" / "train_masks", 4):
        sided = m.copy()
        sided[:, m.shape[1] // 2:] *= 2
        cases.append(sided)
    both = layout_summary([coarse_layout((c > 0).astype(np.int16), [1]) for c in cases])
    sided = layout_summary([coarse_layout(c, [1, 2]) for c in cases])
    assert sided["consistency"] == pytest.approx(both["consistency"])
    assert both["flip_overlap"][1] > 0.6 and sided["flip_overlap"][1] < 0.1


def test_one_case_has_no_summary():
    assert layout_summary([np.zeros((1, 16, 16), np.float32)]) is None


def test_augmentation_rule_keeps_nnunet_defaults_unless_the_layout_is_consistent():
    default = augmentation_rule(2, None)
    assert default["rotation"] == [-3.1416, 3.1416] and default["mirror_axes"] == [0, 1]
    assert augmentation_rule(2, {"consistency": 0.05, "flip_overlap": [0.5, 0.5]}) == default
    lungs = augmentation_rule(2, {"consistency": 0.75, "flip_overlap": [0.44, 0.71]})
    assert lungs["rotation"] == [-CANONICAL_ROTATION_2D, CANONICAL_ROTATION_2D] and lungs["mirror_axes"] == [1]
    assert augmentation_rule(2, {"consistency": 0.75, "flip_overlap": [0.3, 0.4]})["mirror_axes"] == []
    brain = augmentation_rule(3, {"consistency": 0.87, "flip_overlap": [0.93, 0.55, 0.64]})
    assert brain == augmentation_rule(3, None) and brain["mirror_axes"] == [0, 1, 2]  # 3D keeps nnU-Net's


def test_shenzhen_plan_mirrors_left_right_at_training_and_inference(shared_data, tmp_path):
    from medsight.datasets.importers import import_dataset
    from medsight.planning.fingerprint import compute_fingerprint
    from medsight.tasks import get_task

    manifest = import_dataset(shared_data / "shenzhen_cxr", tmp_path / "ds", progress=False)
    fp = compute_fingerprint(manifest, workers=1, progress=False)
    assert fp["foreground_layout"]["consistency"] > 0.6
    rules = get_task("segmentation").plan_rules(manifest, fp, torch.device("cpu"), measure=False)
    assert rules["augmentation"]["mirror_axes"] == [1] and rules["inference"]["mirror_axes"] == [1]
    assert fp["spacing_known"] is False and rules["field_of_view_shape"] == [512, 512]  # PNGs: no pixel size


def test_field_of_view_rule_needs_2d_anatomy_in_files_without_spacing():
    lungs = {"spacing_known": False, "median_shape": [511.5, 512.0], "foreground_layout": {"consistency": 0.75}}
    assert field_of_view_rule(2, lungs) == [512, 512]
    assert field_of_view_rule(2, {**lungs, "spacing_known": True}) is None  # NIfTI/DICOM: resampled by spacing
    assert field_of_view_rule(2, {**lungs, "foreground_layout": {"consistency": 0.0}}) is None  # tiles, vessels
    assert field_of_view_rule(2, {k: v for k, v in lungs.items() if k != "foreground_layout"}) is None
    assert field_of_view_rule(2, {k: v for k, v in lungs.items() if k != "spacing_known"}) is None  # old fingerprint
    assert field_of_view_rule(3, {**lungs, "median_shape": [64, 64, 64]}) is None
