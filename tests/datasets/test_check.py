"""The import-time file check: every file read, one-line errors (worker processes too), warnings."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import link_files
from PIL import Image as PILImage

from medsight.datasets import Case, Manifest, check_dataset, import_dataset
from medsight.datasets.check import scan_dataset
from medsight.errors import InputError


@pytest.fixture
def isbi_pairs(shared_data: Path, tmp_path: Path) -> Path:
    """Four ISBI EM slices and their labels, linked into images/ and labels/."""
    src = shared_data / "isbi2012_em"
    root = tmp_path / "src"
    link_files([src / "images" / f"{n}.png" for n in range(4)], root / "images")
    link_files([src / "labels" / f"{n}.png" for n in range(4)], root / "labels")
    return root


def test_empty_mask_is_a_warning(isbi_pairs: Path, tmp_path: Path):
    (isbi_pairs / "labels" / "2.png").unlink()
    PILImage.fromarray(np.zeros((512, 512), np.uint8)).save(isbi_pairs / "labels" / "2.png")
    m = import_dataset(isbi_pairs, tmp_path / "ds", progress=False)
    assert m.extra["warnings"] == [f"{isbi_pairs / 'labels' / '2.png'}: mask is empty (background only)"]
    assert check_dataset(Manifest.load(tmp_path / "ds"), progress=False) == m.extra["warnings"]


def test_truncated_png_in_a_worker_process_is_one_line(isbi_pairs: Path, tmp_path: Path):
    m = import_dataset(isbi_pairs, tmp_path / "ds", progress=False)
    bad = isbi_pairs / "images" / "3.png"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[: len(data) // 3])
    for processes in (False, True):
        with pytest.raises(InputError) as err:
            scan_dataset(m, workers=2, progress=False, processes=processes)
        message = str(err.value)
        assert message.startswith(f"{bad}: ") and "\n" not in message and "Traceback" not in message
        assert err.value.path == str(bad) and err.value.__cause__ is None


def test_failed_reimport_leaves_the_old_manifest(isbi_pairs: Path, tmp_path: Path):
    import_dataset(isbi_pairs, tmp_path / "ds", progress=False)
    before = (tmp_path / "ds" / "manifest.json").read_text()
    (isbi_pairs / "labels" / "1.png").unlink()
    PILImage.fromarray(np.zeros((500, 512), np.uint8)).save(isbi_pairs / "labels" / "1.png")
    with pytest.raises(InputError, match=r"1.png: label has shape \(500, 512\) but image .*1.png has \(512, 512\)"):
        import_dataset(isbi_pairs, tmp_path / "ds", progress=False)
    assert (tmp_path / "ds" / "manifest.json").read_text() == before
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["manifest.json"]


def test_unmapped_values_and_rgb_masks(isbi_pairs: Path, tmp_path: Path):
    with pytest.raises(InputError, match=r"0.png: label holds values \[255\] that the label mapping does not map"):
        import_dataset(isbi_pairs, tmp_path / "ds", label_map="0:1", progress=False)
    grey = np.asarray(PILImage.open(isbi_pairs / "labels" / "0.png"))
    (isbi_pairs / "labels" / "0.png").unlink()
    PILImage.fromarray(np.stack([grey] * 3, axis=-1)).save(isbi_pairs / "labels" / "0.png")
    m = import_dataset(isbi_pairs, tmp_path / "ds", progress=False)  # an RGB mask repeating one value is read
    assert m.label_mapping == {"0": 0, "255": 1}
    PILImage.fromarray(np.stack([grey, grey, 255 - grey], axis=-1)).save(isbi_pairs / "labels" / "0.png")
    with pytest.raises(InputError, match=r"0.png: label has 3 different channels; a mask needs one"):
        import_dataset(isbi_pairs, tmp_path / "ds", progress=False)


def _nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)
    return str(path)


def test_channels_on_different_grids_and_nan_voxels(shared_data: Path, tmp_path: Path):
    flair = np.asarray(nib.load(shared_data / "brats_examples/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz")
                       .dataobj[100:120, 100:120, 70:80], dtype=np.float32)
    a = _nifti(tmp_path / "a.nii.gz", flair)
    b = _nifti(tmp_path / "b.nii.gz", flair, spacing=(1.0, 1.0, 2.0))
    label = _nifti(tmp_path / "l.nii.gz", (flair > 1).astype(np.uint8))
    m = Manifest(name="t", task="segmentation", dims=3, channels=["A", "B"], labels={"0": "bg", "1": "fg"},
                 cases=[Case(id="c", images=[a, b], label=label)])
    with pytest.raises(InputError, match=r"b.nii.gz: channel file has shape \(20, 20, 10\) spacing \(1.0, 1.0, 2.0\)"):
        check_dataset(m, progress=False)
    flair[3, 4, 5] = np.nan
    m.cases[0].images = [_nifti(tmp_path / "nan.nii.gz", flair)]
    m.channels = ["A"]
    with pytest.raises(InputError, match=r"nan.nii.gz: 1 of 4000 voxels are NaN or Inf"):
        check_dataset(m, progress=False)


def test_undeclared_class_and_channel_count(shared_data: Path):
    image = str(shared_data / "isic_uda1" / "ISIC_0000002.jpg")
    m = Manifest(name="t", task="classification", dims=2, channels=["R", "G", "B"], labels={"0": "a", "1": "b"},
                 cases=[Case(id="x", images=[image], label=0), Case(id="y", images=[image], label=2)])
    with pytest.raises(InputError, match=r"class 2 of case y is not among the declared classes \[0, 1\]"):
        check_dataset(m, workers=1, progress=False)
    m.channels = ["grey"]
    with pytest.raises(InputError, match=r"case x has 3 channel\(s\) but the dataset declares 1 \(grey\)"):
        check_dataset(m, workers=1, progress=False)


def test_empty_field_of_view_is_a_warning(drive: Path, tmp_path: Path):
    ids = ("21", "22", "23")
    link_files([drive / "images" / f"{n}_training.tif" for n in ids], tmp_path / "src" / "images")
    link_files([drive / "1st_manual" / f"{n}_manual1.gif" for n in ids], tmp_path / "src" / "1st_manual")
    link_files([drive / "mask" / f"{n}_training_mask.gif" for n in ids[:2]], tmp_path / "src" / "mask")
    PILImage.fromarray(np.zeros((584, 565), np.uint8)).save(tmp_path / "src" / "mask" / "23_training_mask.gif")
    m = import_dataset(tmp_path / "src", tmp_path / "ds", progress=False)
    assert m.extra["warnings"] == [f"{tmp_path / 'src' / 'mask' / '23_training_mask.gif'}: evaluation mask is "
                                   "empty: case 23_training will score nothing"]


def test_images_without_a_picture_are_warnings(shared_data: Path):
    from medsight.datasets.check import degenerate_image
    from medsight.io import read_image

    isic = shared_data / "isic_uda1"
    # ISIC_0000002.jpg decodes, but every column holds one value; ISIC_0000101.jpg is a lesion
    striped = read_image(isic / "ISIC_0000002.jpg").array
    assert degenerate_image(striped) == ("every column holds one value (vertical stripes): likely a corrupt or "
                                         "placeholder image")
    assert degenerate_image(np.ascontiguousarray(np.swapaxes(striped, 1, 2))).startswith("every row holds one value")
    assert degenerate_image(read_image(isic / "ISIC_0000101.jpg").array) is None
    assert degenerate_image(np.full((1, 8, 8), 3.0)) == "is constant (every voxel 3): it holds no picture"
    # a real BraTS slice repeated along the third axis is a volume with one slice's picture
    flair = np.asarray(nib.load(shared_data / "brats_examples/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz")
                       .dataobj, dtype=np.float32)
    assert degenerate_image(flair[None]) is None
    assert "one slice repeated" in degenerate_image(np.repeat(flair[None, :, :, 70:71], 5, axis=3))
    assert degenerate_image(flair[None, :, :, 70:71]) is None  # one slice kept as a volume is a picture


def test_import_warns_of_striped_images_and_logs_each_kind_three_times(shared_data: Path, tmp_path: Path, caplog):
    isic = shared_data / "isic_uda1"
    names = ["ISIC_0000002", "ISIC_0000003", "ISIC_0000005", "ISIC_0000006", "ISIC_0000101", "ISIC_0000102"]
    link_files([isic / f"{n}.{ext}" for n in names for ext in ("jpg", "json")], tmp_path / "src")
    with caplog.at_level("WARNING"):
        m = import_dataset(tmp_path / "src", tmp_path / "ds", format="folder-json", n_folds=2, progress=False)
    striped = [w for w in m.extra["warnings"] if "vertical stripes" in w]
    assert sorted(Path(w.split(": ")[0]).name for w in striped) == [f"{n}.jpg" for n in names[:4]]
    assert m.extra["cases_without_a_picture"] == names[:4]  # case ids are the file stems here
    logged = [r.getMessage() for r in caplog.records if "vertical stripes" in r.getMessage()]
    assert len(logged) == 4 and logged[-1].startswith("... and 1 more files: every column holds one value")
