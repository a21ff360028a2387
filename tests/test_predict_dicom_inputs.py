"""``medsight predict`` on DICOM inputs given as folders: a series folder is one 3D case named after the
folder, a folder of series folders one case per series; gapped series and folders mixing series are refused
before anything is written; loose single-file DICOM images stay one case per file (2D runs).

Series are written from a real BraTS FLAIR crop (as tests/io/test_geometry_edge_cases.py does).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import shrink_plan, write_dicom_series, write_isbi_pairs
from PIL import Image as PILImage

from medsight import api
from medsight.cli import main
from medsight.datasets import import_dataset
from medsight.errors import InputError
from medsight.io import read_image, read_series

STUDY_UID = "1.2.826.0.1.3680043.2.1125.7"
UID = "1.2.826.0.1.3680043.2.1125.7.{}"


def _brats_crop(shared_data: Path, case: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FLAIR, whole-tumour mask, affine) of 24 x 24 x 16 voxels: every 2nd voxel around the tumour."""
    label = np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj)
    centre = np.argwhere(label > 0).mean(0).astype(int)
    sl = tuple(slice(max(0, c - h), max(0, c - h) + 2 * h, 2) for c, h in zip(centre, (24, 24, 16)))
    flair = np.asarray(nib.load(case / "Flair_subtrMeanDivStd.nii.gz").dataobj)[sl].astype(np.float32)
    return flair, (label[sl] > 0).astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])


def _write_series(volume: np.ndarray, folder: Path, uid: str, positions: list[float] | None = None) -> Path:
    """One DICOM file per slice of a real (x, y, z) volume; file names start with the series number, so two
    series can share a folder."""
    return write_dicom_series(volume, folder, STUDY_UID, uid, positions, prefix=f"{uid.rsplit('.', 1)[-1]}_")


@pytest.fixture(scope="module")
def brats(shared_data):
    cases = sorted(p for p in (shared_data / "brats_examples").iterdir() if p.is_dir())[:3]
    return [(c.name, *_brats_crop(shared_data, c)) for c in cases]


@pytest.fixture(scope="module")
def run3d(brats, tmp_path_factory):
    """A tiny 3D segmentation run (1 epoch) on three BraTS crops."""
    root = tmp_path_factory.mktemp("run3d")
    for case, flair, mask, affine in brats:
        (root / "src" / case).mkdir(parents=True)
        nib.save(nib.Nifti1Image(flair, affine), str(root / "src" / case / "flair.nii.gz"))
        nib.save(nib.Nifti1Image(mask, affine), str(root / "src" / case / "seg.nii.gz"))
    import_dataset(root / "src", root / "ds", format="cases", n_folds=3, progress=False)
    shrink_plan(root / "ds", epochs=1)
    return api.train(root / "ds", fold=0, quiet=True)


@pytest.fixture(scope="module")
def volumes(brats):
    """Two MR-like integer volumes (x, y, z) from real FLAIR crops."""
    return [np.clip(flair * 200 + 1000, 0, 4000).astype(np.int16) for _, flair, _, _ in brats[:2]]


def test_series_folder_is_one_case_named_after_it_on_the_series_grid(run3d, volumes, tmp_path):
    series = _write_series(volumes[0], tmp_path / "patient_7", UID.format(1))
    out = api.predict(run3d, [series], tmp_path / "out", threads=1, quiet=True)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["patient_7.nii.gz", "volumes.csv"]
    pred, image = nib.load(out / "patient_7.nii.gz"), read_series(series)
    assert pred.shape == image.spatial_shape == volumes[0].shape
    np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}


def test_folder_of_series_folders_gives_one_mask_per_series(run3d, volumes, tmp_path):
    parent = tmp_path / "study"
    for k, volume in enumerate(volumes):
        _write_series(volume, parent / f"series_{k}", UID.format(10 + k))
    out = api.predict(run3d, [parent], tmp_path / "out", threads=1, quiet=True)
    for k, volume in enumerate(volumes):
        pred = nib.load(out / f"series_{k}.nii.gz")
        assert pred.shape == volume.shape
        np.testing.assert_allclose(pred.affine, read_series(parent / f"series_{k}").affine, atol=1e-4)
    cases = {line.split(",")[0] for line in (out / "volumes.csv").read_text().splitlines()[1:]}
    assert cases == {"series_0", "series_1"}


def test_gapped_series_is_one_line_exit_2_and_nothing_written(run3d, volumes, tmp_path, capsys):
    n = volumes[0].shape[2]
    keep = [k for k in range(n) if k != 6]
    gapped = _write_series(volumes[0][..., keep], tmp_path / "gapped", UID.format(20), [2.0 * k for k in keep])
    good = _write_series(volumes[1], tmp_path / "good", UID.format(21))
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", str(run3d), str(good), str(gapped), "-o", str(out), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert str(gapped) in err and "about 1 slice(s) missing" in err
    assert not out.exists()  # refused before the good series was predicted


def test_folder_holding_two_series_is_refused_naming_it(run3d, volumes, tmp_path):
    mixed = tmp_path / "mixed"
    _write_series(volumes[0], mixed, UID.format(30))
    _write_series(volumes[1], mixed, UID.format(31))
    with pytest.raises(InputError) as caught:
        api.predict(run3d, [mixed], tmp_path / "out", threads=1, quiet=True)
    message = str(caught.value)
    assert message.startswith(str(mixed)) and "2 DICOM series" in message and "its own folder" in message
    assert not (tmp_path / "out").exists()


def _write_loose_images(shared_data: Path, folder: Path) -> Path:
    """Two single-frame DICOM images of real EM crops, tagged with one series but without slice positions
    (as projection images such as X-rays are)."""
    import SimpleITK as sitk

    folder.mkdir()
    for k in (5, 6):
        pixels = np.asarray(PILImage.open(shared_data / f"isbi2012_em/images/{k}.png"))[:64, :72]
        plane = sitk.GetImageFromArray(np.ascontiguousarray(pixels))
        plane.SetMetaData("0020|000e", UID.format(40))
        plane.SetMetaData("0008|0060", "OT")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"em_{k:02d}.dcm"))
        writer.Execute(plane)
    return folder


def test_loose_2d_dicom_files_stay_one_case_each(shared_data, run3d, tmp_path):
    loose = _write_loose_images(shared_data, tmp_path / "xrays")
    src = write_isbi_pairs(tmp_path / "em", shared_data, n=4, size=64)
    import_dataset(src, tmp_path / "ds", format="pairs", n_folds=2, progress=False)
    shrink_plan(tmp_path / "ds", epochs=1)
    run2d = api.train(tmp_path / "ds", fold=0, quiet=True)
    out = api.predict(run2d, [loose], tmp_path / "out", threads=1, quiet=True)
    for k in (5, 6):
        mask = read_image(out / f"em_{k:02d}.nii.gz")
        assert mask.ndim == 2 and mask.spatial_shape == (64, 72)
    # a 3D run takes them one by one too (refusing each as 2D), never stacked into one volume
    with pytest.raises(InputError, match="em_05.dcm: image is 2D but the model was trained on 3D"):
        api.predict(run3d, [loose], tmp_path / "out3d", threads=1, quiet=True)
