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


# The study commands (lesions, mil, weak, pretrain): sizes, output paths and datasets without boxes.

ZERO_SIZES = [("lesions", "--scales", ["0", "32"]), ("lesions", "--patch", ["0"]), ("mil", "--downsample", ["0"]),
              ("mil", "--tile", ["-2"]), ("weak", "--downsample", ["0"]), ("pretrain", "--side", ["0"])]


@pytest.mark.parametrize("command, option, values", ZERO_SIZES, ids=[f"{c}{o}" for c, o, _ in ZERO_SIZES])
def test_sizes_below_one_are_refused_by_the_parser(command, option, values, tmp_path, capsys):
    from medsight.cli import main

    out = tmp_path / "out"
    source = ["IMAGES"] if command in ("lesions", "pretrain") else ["DS", "--positive-class", "WBC"]
    with pytest.raises(SystemExit) as e:
        main([command, *source, "-o", str(out), option, *values])
    assert e.value.code == 2
    assert f"error: argument {option}: {values[0]} must be at least 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["lesions", "mil", "weak"])
def test_an_output_folder_that_is_a_file_is_refused(command, tmp_path, capsys):
    from medsight.cli import main

    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    source = ["p.csv"] if command == "lesions" else [str(tmp_path / "ds"), "--positive-class", "WBC"]
    assert main([command, *source, "-o", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medsight: error: {taken}: is a file, not a folder (give a folder for the outputs with -o)"]
    assert taken.read_text() == "keep me"


def test_weak_on_a_dataset_without_boxes_says_so(tmp_path, shared_data, capsys):
    from medsight import api
    from medsight.cli import main
    from medsight.errors import InputError
    from medsight.weak import weak_localise

    voc = tmp_path / "voc"
    names = (shared_data / "bccd/splits/train.txt").read_text().split()[:5]
    for sub in ("Annotations", "JPEGImages", "splits"):
        (voc / sub).mkdir(parents=True)
    for name in names:
        (voc / "JPEGImages" / f"{name}.jpg").symlink_to(shared_data / "bccd/JPEGImages" / f"{name}.jpg")
    (voc / "splits/train.txt").write_text("\n".join(names[:3]))
    (voc / "splits/val.txt").write_text("\n".join(names[3:]))
    ds = tmp_path / "ds"
    api.import_dataset(voc, ds, format="voc", progress=False)
    out = tmp_path / "weak"
    assert main(["weak", str(ds), "--positive-class", "WBC", "-o", str(out), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ds}: the dataset has no boxes, so no classes at all" in err[0], err
    assert not out.exists()
    with pytest.raises(InputError, match="downsample must be at least 1"):
        weak_localise(ds, out, "WBC", downsample=0)
