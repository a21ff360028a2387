"""The bad-input corpus through the real CLI: one line on stderr naming the file, exit 2, nothing written.

Each case is built from real files (ISBI EM slices, a BraTS crop), then broken the way users' data is.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_isbi_pairs
from PIL import Image as PILImage


def _pairs(tmp: Path, shared: Path) -> Path:
    return write_isbi_pairs(tmp / "src", shared, n=3, size=64)


def truncated_png(tmp, shared):
    src = _pairs(tmp, shared)
    raw = (src / "images/em_01.png").read_bytes()
    (src / "images/em_01.png").write_bytes(raw[: len(raw) // 3])
    return src, ["--format", "pairs"], "em_01.png"


def label_other_shape(tmp, shared):
    src = _pairs(tmp, shared)
    lab = np.asarray(PILImage.open(src / "labels/em_02.png"))
    PILImage.fromarray(lab[:50, :50]).save(src / "labels/em_02.png")
    return src, ["--format", "pairs"], "em_02.png"


def undeclared_label_values(tmp, shared):
    src = _pairs(tmp, shared)
    lab = np.asarray(PILImage.open(src / "labels/em_00.png")).copy()
    lab[:4, :4] = 7
    PILImage.fromarray(lab).save(src / "labels/em_00.png")
    return src, ["--format", "pairs", "--label-map", "0:1,255:0"], "em_00.png"


def image_without_label(tmp, shared):
    src = _pairs(tmp, shared)
    (src / "labels/em_01.png").unlink()
    return src, ["--format", "pairs"], "em_01"


def label_without_image(tmp, shared):
    src = _pairs(tmp, shared)
    (src / "images/em_02.png").unlink()
    return src, ["--format", "pairs"], "em_02"


def empty_folder(tmp, shared):
    (tmp / "src").mkdir()
    return tmp / "src", [], "src"


def missing_dataset_json(tmp, shared):
    src = tmp / "src"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    img = np.asarray(PILImage.open(shared / "isbi2012_em/images/0.png"))[:32, :32]
    PILImage.fromarray(img).save(src / "imagesTr/em_0000.png")
    PILImage.fromarray(img).save(src / "labelsTr/em.png")
    return src, ["--format", "msd"], "dataset.json"


def nan_voxels(tmp, shared):
    src = tmp / "src"
    flair = nib.load(shared / "brats_examples/brats_2013_pat0004_1/Flair_subtrMeanDivStd.nii.gz")
    lab = nib.load(shared / "brats_examples/brats_2013_pat0004_1/OTMultiClass.nii.gz")
    for i in range(2):
        d = src / f"case{i}"
        d.mkdir(parents=True)
        data = np.asarray(flair.dataobj)[100:132, 100:132, 70:86].astype(np.float32)
        if i == 1:
            data[3, 4, 5] = np.nan
        nib.save(nib.Nifti1Image(data, flair.affine), d / "Flair.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(lab.dataobj)[100:132, 100:132, 70:86].astype(np.uint8), lab.affine),
                 d / "OTMultiClass.nii.gz")
    return src, ["--format", "cases", "--option", "channel_patterns=FLAIR=Flair*", "--option",
                 "label_pattern=OTMultiClass*"], "Flair.nii.gz"


def csv_naming_missing_files(tmp, shared):
    src = tmp / "src"
    src.mkdir()
    img = np.asarray(PILImage.open(shared / "isbi2012_em/images/0.png"))[:32, :32]
    PILImage.fromarray(img).save(src / "a.png")
    (src / "labels.csv").write_text("image,label\na.png,0\nmissing.png,1\n")
    return src, ["--format", "folder-csv", "--csv", str(src / "labels.csv")], "missing.png"


def unknown_format(tmp, shared):
    src = tmp / "src"
    src.mkdir()
    (src / "notes.txt").write_text("not images")
    return src, [], "src"


CASES = [truncated_png, label_other_shape, undeclared_label_values, image_without_label, label_without_image,
         empty_folder, missing_dataset_json, nan_voxels, csv_naming_missing_files, unknown_format]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(make, tmp_path, shared_data):
    src, args, must_name = make(tmp_path, shared_data)
    ds = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert must_name in lines[0], lines[0]
    assert not (ds / "manifest.json").exists()


def test_empty_mask_is_a_warning_not_an_error(tmp_path, shared_data):
    src = _pairs(tmp_path, shared_data)
    PILImage.fromarray(np.full((64, 72), 255, np.uint8)).save(src / "labels/em_01.png")
    ds = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "pairs",
                        "--label-map", "0:1,255:0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "em_01" in r.stderr and "empty" in r.stderr.lower()
    assert json.loads((ds / "manifest.json").read_text())["task"] == "segmentation"
