"""Boxes from label masks: connected components per class or region, specks skipped; ``import --task detection``."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from medsight.datasets.mask_boxes import component_boxes

from helpers import write_brats_cases


def test_2d_components_give_x_column_y_row_boxes_largest_first():
    mask = np.zeros((10, 12), np.int16)
    mask[1:3, 2:5] = 1          # 6 pixels: rows 1-2, columns 2-4
    mask[5:9, 6:11] = 1         # 20 pixels
    mask[0, 11] = 2             # a 1-pixel speck of class 2
    boxes, skipped = component_boxes(mask, {1: [1], 2: [2]}, min_size=2)
    assert boxes == [{"box": [6, 5, 11, 9], "label": 1}, {"box": [2, 1, 5, 3], "label": 1}]
    assert skipped == 1


def test_diagonal_touch_is_one_component_and_regions_merge_values():
    mask = np.zeros((4, 4, 4), np.int16)
    mask[0, 0, 0] = 1
    mask[1, 1, 1] = 4           # touches the first voxel only at a corner: one object with full connectivity
    mask[3, 3, 3] = 2
    boxes, skipped = component_boxes(mask, {1: [1, 2, 4]}, min_size=1)
    assert boxes == [{"box": [0, 0, 0, 2, 2, 2], "label": 1}, {"box": [3, 3, 3, 4, 4, 4], "label": 1}]
    assert skipped == 0
    only_enhancing, _ = component_boxes(mask, {7: [4]}, min_size=1)
    assert only_enhancing == [{"box": [1, 1, 1, 2, 2, 2], "label": 7}]


def test_import_brats_crops_as_3d_detection(shared_data, tmp_path):
    src = write_brats_cases(tmp_path / "src", shared_data, n=3)
    ds = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "cases",
                        "--task", "detection", "--regions", "tumour=1,2,3,4", "--folds", "3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((ds / "manifest.json").read_text())
    assert m["task"] == "detection" and m["labels"] == {"0": "background", "1": "tumour"}
    assert m["regions"] == {} and m["label_mapping"] == {}
    for case in m["cases"]:
        mask = np.asarray(nib.load(src / case["id"] / "OTMultiClass.nii.gz").dataobj) > 0
        assert "label" not in case and case["boxes"], case["id"]
        for item in case["boxes"]:
            lo, hi = item["box"][:3], item["box"][3:]
            inside = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            assert item["label"] == 1 and inside.any()
            # the box is tight: every face touches the component
            for axis in range(3):
                assert inside.take(0, axis).any() and inside.take(-1, axis).any()
        # every tumour voxel of a kept component lies in some box
        covered = np.zeros_like(mask)
        for item in case["boxes"]:
            b = item["box"]
            covered[b[0]:b[3], b[1]:b[4], b[2]:b[5]] = True
        assert (mask & ~covered).sum() < 20 * 10  # only specks under --min-box-size remain outside


def test_min_box_size_needs_boxes_from_masks(shared_data, tmp_path):
    src = write_brats_cases(tmp_path / "src", shared_data, n=2)
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(tmp_path / "ds"), "--format",
                        "cases", "--min-box-size", "5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--min-box-size" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ds" / "manifest.json").exists()
