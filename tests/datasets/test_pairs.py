"""``pairs`` importer on DRIVE, ISBI 2012 EM and Shenzhen CXR, and its refusals."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import link_files

from medsight.datasets import Manifest, detect_format, import_dataset
from medsight.datasets.importers.pairs import match_by_id
from medsight.errors import InputError
from medsight.io import read_image


def test_drive_pairs_with_field_of_view_masks(drive: Path, tmp_path: Path):
    assert detect_format(drive.parent) == "pairs"  # found one level down (drive/training)
    m = import_dataset(drive.parent, tmp_path / "ds", progress=False)
    assert (m.task, m.dims, m.channels, len(m.cases)) == ("segmentation", 2, ["R", "G", "B"], 20)
    assert [c.id for c in m.cases] == [f"{n}_training" for n in range(21, 41)]
    case = m.case_by_id["21_training"]
    assert case.label == str(drive / "1st_manual" / "21_manual1.gif")
    assert case.eval_mask == str(drive / "mask" / "21_training_mask.gif")
    assert all(Path(c.eval_mask).name == f"{c.id}_mask.gif" for c in m.cases)
    assert m.label_mapping == {"0": 0, "255": 1} and m.labels == {"0": "background", "1": "foreground"}
    assert len(m.splits) == 5 and sorted(i for s in m.splits for i in s["val"]) == sorted(c.id for c in m.cases)
    saved = Manifest.load(tmp_path / "ds")
    assert saved.case_by_id["30_training"].eval_mask.endswith("30_training_mask.gif")
    assert saved.splits == m.splits


def test_isbi_label_map_makes_membranes_the_foreground(shared_data: Path, tmp_path: Path):
    src = shared_data / "isbi2012_em"
    m = import_dataset(src, tmp_path / "ds", label_map="0:1,255:0", label_names="1:membrane", progress=False)
    assert len(m.cases) == 24 and m.cases[0].id == "0"
    assert m.label_mapping == {"0": 1, "255": 0}
    assert m.labels == {"0": "background", "1": "membrane"}
    raw = read_image(m.case_by_id["3"].label).array
    assert set(np.unique(raw).tolist()) == {0, 255}  # both raw values are mapped: 0 (membrane) -> 1
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["label_mapping"] == {"0": 1, "255": 0}


def test_shenzhen_anti_aliased_masks_are_thresholded(shared_data: Path, tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="medsight.datasets"):
        m = import_dataset(shared_data / "shenzhen_cxr", tmp_path / "ds", progress=False)
    assert [c.id for c in m.cases] == [f"CHNCXR_{n:04d}_0" for n in range(1, 11)]  # test_images/ left out
    assert all(Path(c.label).name == f"{c.id}_mask.png" for c in m.cases)
    assert m.label_mapping["127"] == 0 and m.label_mapping["128"] == 1 and m.label_mapping["255"] == 1
    assert "thresholded at 128" in caplog.text and m.extra["warnings"]


def test_explicit_folders_and_no_eval_mask(drive: Path, tmp_path: Path):
    m = import_dataset(drive, tmp_path / "ds", format="pairs", images_dir="images", labels_dir="1st_manual",
                       progress=False)
    assert len(m.cases) == 20 and all(c.eval_mask is None for c in m.cases)


def test_image_without_mask_is_refused(drive: Path, tmp_path: Path):
    images = sorted((drive / "images").iterdir())[:3]
    masks = sorted((drive / "1st_manual").iterdir())[:2]
    link_files(images, tmp_path / "src" / "images")
    link_files(masks, tmp_path / "src" / "labels")
    with pytest.raises(InputError, match="23_training.tif: image has no mask"):
        import_dataset(tmp_path / "src", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_mask_without_image_is_refused(drive: Path, tmp_path: Path):
    link_files(sorted((drive / "images").iterdir())[:2], tmp_path / "src" / "images")
    link_files(sorted((drive / "1st_manual").iterdir())[:3], tmp_path / "src" / "labels")
    with pytest.raises(InputError, match="23_manual1.gif: mask has no image"):
        import_dataset(tmp_path / "src", tmp_path / "ds", progress=False)


def test_matching_rules_by_leading_tokens():
    images = [Path(f"CHNCXR_{n:04d}_0.png") for n in (1, 2, 11)]
    masks = [Path(f"CHNCXR_{n:04d}_0_mask.png") for n in (11, 1, 2)]
    pairs = match_by_id(images, masks, "mask", Path("m"))
    assert {i.name: m.name for i, m in pairs.items()} == {
        "CHNCXR_0001_0.png": "CHNCXR_0001_0_mask.png", "CHNCXR_0002_0.png": "CHNCXR_0002_0_mask.png",
        "CHNCXR_0011_0.png": "CHNCXR_0011_0_mask.png"}
    # a lone image does not swallow another case's mask through the shared "CHNCXR" token
    with pytest.raises(InputError, match="no image"):
        match_by_id([Path("CHNCXR_0001_0.png")], [Path("CHNCXR_0002_0_mask.png")], "mask", Path("m"))
    # "1" and "10" are different ids
    pairs = match_by_id([Path("1.png"), Path("10.png")], [Path("10.png"), Path("1.png")], "mask", Path("m"))
    assert {i.name: m.name for i, m in pairs.items()} == {"1.png": "1.png", "10.png": "10.png"}
