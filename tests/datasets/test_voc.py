"""``voc`` importer on BCCD: split files, class names, degenerate boxes, boxes outside the image."""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from helpers import link_files

from medsight.datasets import detect_format, import_dataset
from medsight.errors import InputError


def test_bccd(shared_data: Path, tmp_path: Path, caplog):
    src = shared_data / "bccd"
    assert detect_format(src) == "voc"
    with caplog.at_level(logging.WARNING, logger="medsight.datasets"):
        m = import_dataset(src, tmp_path / "ds", progress=False)
    assert (m.task, m.dims, m.channels) == ("detection", 2, ["R", "G", "B"])
    assert m.labels == {"1": "Platelets", "2": "RBC", "3": "WBC"}
    assert Counter(c.subset for c in m.cases) == {"train": 205, "val": 87}
    assert len(m.splits) == 1 and len(m.splits[0]["train"]) == 205 and len(m.splits[0]["val"]) == 87
    degenerate = [w for w in m.extra["warnings"] if "degenerate" in w]
    assert len(degenerate) == 2 and "BloodImage_00338.xml" in degenerate[0] and "BloodImage_00343.xml" in degenerate[1]
    assert caplog.text.count("degenerate") == 2
    first = m.case_by_id["BloodImage_00000"]
    assert first.boxes[0] == {"box": [260, 177, 491, 376], "label": 3}  # the XML's first object, a WBC
    assert {"box": [555, 356, 640, 455], "label": 2} in first.boxes  # xmax = width is inside
    counts = Counter(b["label"] for c in m.cases for b in c.boxes)
    assert counts == {2: 3350 - 2, 3: 301, 1: 292}  # the two degenerate boxes were RBCs


def _small_voc(shared_data: Path, root: Path, ids: list[str]) -> Path:
    bccd = shared_data / "bccd"
    link_files([bccd / "JPEGImages" / f"{i}.jpg" for i in ids], root / "JPEGImages")
    (root / "Annotations").mkdir()
    for i in ids:
        (root / "Annotations" / f"{i}.xml").write_text((bccd / "Annotations" / f"{i}.xml").read_text())
    return root


def test_box_beyond_the_xml_size_is_refused(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    xml = root / "Annotations" / "BloodImage_00001.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<xmax>", "<xmax>7", 1))  # e.g. 350 -> 7350
    with pytest.raises(InputError, match=r"BloodImage_00001.xml: \w+ box .* lies outside the image \(640 x 480"):
        import_dataset(root, tmp_path / "ds", progress=False)


def test_box_beyond_the_real_image_is_refused_at_check(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    xml = root / "Annotations" / "BloodImage_00000.xml"
    xml.write_text(xml.read_text().replace("<width>640</width>", "<width>6400</width>")
                   .replace("<xmax>491</xmax>", "<xmax>700</xmax>"))
    with pytest.raises(InputError, match=r"BloodImage_00000.jpg: box \[260, 177, 700, 376\] of case "
                                         r"BloodImage_00000 lies outside the image \(640 x 480\)"):
        import_dataset(root, tmp_path / "ds", progress=False)


def test_image_without_boxes_is_a_negative(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    (root / "JPEGImages" / "BloodImage_00002.jpg").symlink_to(shared_data / "bccd/JPEGImages/BloodImage_00002.jpg")
    m = import_dataset(root, tmp_path / "ds", progress=False)
    assert len(m.cases) == 3 and m.case_by_id["BloodImage_00002"].boxes == []
    assert all(c.subset is None for c in m.cases) and len(m.splits) == 3  # no split files: k-fold


def test_box_coordinate_that_is_not_finite_is_refused(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    xml = root / "Annotations" / "BloodImage_00001.xml"
    xml.write_text(re.sub(r"<xmin>\d+</xmin>", "<xmin>nan</xmin>", xml.read_text(), count=1))
    with pytest.raises(InputError, match=r"BloodImage_00001.xml: an object's bndbox/xmin is nan, not a finite"):
        import_dataset(root, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_split_file_naming_a_missing_image_is_refused(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("BloodImage_00000\nBloodImage_99999\n")
    (root / "splits" / "val.txt").write_text("BloodImage_00001\n")
    with pytest.raises(InputError, match=r"splits/train.txt: line 2 names image 'BloodImage_99999', which is not"):
        import_dataset(root, tmp_path / "ds", progress=False)
    (root / "splits" / "train.txt").write_text("BloodImage_00000\n")
    m = import_dataset(root, tmp_path / "ds", progress=False)
    assert m.splits == [{"train": ["BloodImage_00000"], "val": ["BloodImage_00001"]}]


def test_split_file_that_is_not_text_is_refused(shared_data: Path, tmp_path: Path):
    root = _small_voc(shared_data, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_bytes((shared_data / "bccd/JPEGImages/BloodImage_00000.jpg").read_bytes())
    with pytest.raises(InputError, match=r"splits/train.txt: is not a readable split file of image ids"):
        import_dataset(root, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()
