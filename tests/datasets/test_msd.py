"""``msd`` importer: MSD v1 and nnU-Net v2 folders built from real files, and the refusals at import."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.datasets import Manifest, detect_format, import_dataset
from medsight.errors import InputError
from medsight.io import read_image

CROP = (slice(90, 130), slice(100, 140), slice(60, 84))  # through the tumour of both cases used


def _brats_crop(shared_data: Path, case: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """([Flair, T1c] crops, label crop as uint8, affine) of one BraTS example case."""
    folder = shared_data / "brats_examples" / case
    flair = nib.load(folder / "Flair_subtrMeanDivStd.nii.gz")
    t1c = nib.load(folder / "T1c_subtrMeanDivStd.nii.gz")
    label = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj[CROP]).astype(np.uint8)
    return ([np.asarray(flair.dataobj[CROP], dtype=np.float32), np.asarray(t1c.dataobj[CROP], dtype=np.float32)],
            label, flair.affine)


@pytest.fixture(scope="module")
def brats_crops(shared_data: Path) -> dict[str, tuple]:
    """The crops of two BraTS cases, read once per module."""
    return {case: _brats_crop(shared_data, case) for case in ("brats_2013_pat0003_1", "brats_2013_pat0004_1")}


@pytest.fixture
def msd_v1(brats_crops: dict, tmp_path: Path) -> Path:
    """An MSD v1 BrainTumour-like folder: two cases, FLAIR + T1c in one 4D NIfTI each."""
    root = tmp_path / "Task01_Brats"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for n, (channels, label, affine) in enumerate(brats_crops.values()):
        nib.save(nib.Nifti1Image(np.stack(channels, axis=-1), affine), root / "imagesTr" / f"BRATS_{n:03d}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"BRATS_{n:03d}.nii.gz")
        training.append({"image": f"./imagesTr/BRATS_{n:03d}.nii.gz", "label": f"./labelsTr/BRATS_{n:03d}.nii.gz"})
    meta = {"name": "BrainTumour", "tensorImageSize": "4D", "modality": {"0": "FLAIR", "1": "T1c"},
            "labels": {"0": "background", "1": "necrosis", "2": "oedema", "3": "non-enhancing",
                       "4": "enhancing"}, "numTraining": 2, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def nnunet_v2_png(drive: Path, tmp_path: Path) -> Path:
    """An nnU-Net v2 2D folder from three DRIVE images: RGB ``_0000.png`` and 0/1 label PNGs."""
    root = tmp_path / "Dataset001_Drive"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in (21, 22, 23):
        PILImage.open(drive / "images" / f"{n}_training.tif").save(root / "imagesTr" / f"drive_{n}_0000.png")
        vessels = (np.asarray(PILImage.open(drive / "1st_manual" / f"{n}_manual1.gif")) > 0).astype(np.uint8)
        PILImage.fromarray(vessels).save(root / "labelsTr" / f"drive_{n}.png")
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "vessel": 1},
            "numTraining": 3, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_msd_v1_with_4d_images(msd_v1: Path, tmp_path: Path):
    assert detect_format(msd_v1) == "msd"
    m = import_dataset(msd_v1, tmp_path / "ds", progress=False)
    assert (m.name, m.task, m.dims, m.channels) == ("BrainTumour", "segmentation", 3, ["FLAIR", "T1c"])
    assert m.labels["4"] == "enhancing" and m.label_values == [0, 1, 2, 3, 4]
    assert m.modality == {"0": "MR", "1": "MR"} and m.extra["dialect"] == "msd_v1"
    assert not m.strip_channel_suffix and m.file_ending == ".nii.gz"
    assert [c.id for c in m.cases] == ["BRATS_000", "BRATS_001"]
    assert m.cases[0].images == [str(msd_v1 / "imagesTr" / "BRATS_000.nii.gz")]  # one file, two channels
    assert read_image(m.cases[0].images[0]).num_channels == 2
    assert len(m.splits) == 2  # two cases: two folds


def test_nnunet_v2_rgb_png(nnunet_v2_png: Path, tmp_path: Path):
    m = import_dataset(nnunet_v2_png, tmp_path / "ds", progress=False)
    assert (m.dims, m.channels, m.file_ending, m.strip_channel_suffix) == (2, ["R", "G", "B"], ".png", True)
    assert m.labels == {"0": "background", "1": "vessel"} and m.label_mapping == {}
    assert m.modality == {"0": "RGB", "1": "RGB", "2": "RGB"}
    assert [c.id for c in m.cases] == ["drive_21", "drive_22", "drive_23"]
    assert [Path(p).name for p in m.cases[0].images] == ["drive_21_0000.png"]
    assert Path(m.cases[0].label).name == "drive_21.png"


def test_nnunet_v2_channels_and_regions(brats_crops: dict, tmp_path: Path):
    root = tmp_path / "Dataset002_Brats"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    channels, label, affine = brats_crops["brats_2013_pat0003_1"]
    for k, array in enumerate(channels):
        nib.save(nib.Nifti1Image(array, affine), root / "imagesTr" / f"brats_003_{k:04d}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / "brats_003.nii.gz")
    meta = {"channel_names": {"0": "FLAIR", "1": "T1c"}, "numTraining": 1, "file_ending": ".nii.gz",
            "labels": {"background": 0, "whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": 4},
            "regions_class_order": [1, 2, 3]}
    (root / "dataset.json").write_text(json.dumps(meta))
    m = import_dataset(root, tmp_path / "ds", progress=False)
    assert m.regions == {"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}
    assert m.labels == {"0": "background", "1": "label_1", "2": "label_2", "3": "label_3", "4": "enhancing"}
    assert m.cases[0].id == "brats_003" and len(m.cases[0].images) == 2
    assert m.extra["regions_class_order"] == [1, 2, 3] and m.splits == []  # one case: nothing to split


def test_truncated_nifti_is_refused_naming_it(msd_v1: Path, tmp_path: Path):
    bad = msd_v1 / "imagesTr" / "BRATS_001.nii.gz"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        import_dataset(msd_v1, tmp_path / "ds", progress=False)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_label_with_another_shape_is_refused(msd_v1: Path, tmp_path: Path):
    label_path = msd_v1 / "labelsTr" / "BRATS_001.nii.gz"
    label = nib.load(label_path)
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[:, :-2], label.affine), label_path)
    with pytest.raises(InputError, match=r"label has shape \(40, 38, 24\) but image .*BRATS_001.nii.gz has "
                                         r"\(40, 40, 24\)"):
        import_dataset(msd_v1, tmp_path / "ds", progress=False)


def test_undeclared_label_values_are_refused(msd_v1: Path, tmp_path: Path):
    meta = json.loads((msd_v1 / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "tumour"}
    (msd_v1 / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"BRATS_000.nii.gz: label holds values \[2, 3, 4\] not declared"):
        import_dataset(msd_v1, tmp_path / "ds", progress=False)


def test_missing_dataset_json(msd_v1: Path, tmp_path: Path):
    (msd_v1 / "dataset.json").unlink()
    assert detect_format(msd_v1) == "msd"
    with pytest.raises(InputError, match="dataset.json missing"):
        import_dataset(msd_v1, tmp_path / "ds", progress=False)


def test_v2_case_without_label_or_with_missing_channel(nnunet_v2_png: Path, tmp_path: Path):
    (nnunet_v2_png / "labelsTr" / "drive_22.png").unlink()
    with pytest.raises(InputError, match="drive_22.png: case drive_22 has no label file"):
        import_dataset(nnunet_v2_png, tmp_path / "ds", progress=False)


def test_reimport_round_trip(nnunet_v2_png: Path, tmp_path: Path):
    m = import_dataset(nnunet_v2_png, tmp_path / "ds", progress=False)
    loaded = Manifest.load(tmp_path / "ds")
    assert loaded.to_json() == m.to_json()
