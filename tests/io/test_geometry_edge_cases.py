"""Input geometry edge cases of the segmentation path, on small crops of real BraTS / ISBI EM / ITK data.

Oblique and flipped affines, 4D NIfTI images and labels, DICOM series with a missing slice or uneven
slice steps, and inputs whose own format cannot hold a predicted mask (a DICOM series, JPEG, .mhd).
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import shrink_plan, write_dicom_series, write_isbi_pairs
from PIL import Image as PILImage

from medsight import api
from medsight.datasets import import_dataset
from medsight.datasets.loading import read_case_label
from medsight.datasets.manifest import Case, Manifest
from medsight.errors import InputError
from medsight.io import read_header, read_image

BRATS = "brats_examples"
STUDY_UID = "1.2.826.0.1.3680043.2.1125.1"


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return m


def _oblique_affine(flip: bool = False) -> np.ndarray:
    """A RAS affine rotated about two axes (2 mm voxels), with the first and last axes flipped on request."""
    a = np.eye(4)
    a[:3, :3] = _rotation(2, 20) @ _rotation(0, 15) @ np.diag([2.0, 2.0, 2.0])
    if flip:
        a[:3, :3] = a[:3, :3] @ np.diag([-1.0, 1.0, -1.0])
    a[:3, 3] = (10.0, -20.0, 5.0)
    return a


def _brats_crops(shared_data: Path, n: int = 3) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(case, FLAIR, T1c, whole-tumour mask) crops of 24 x 24 x 16 voxels (every 2nd voxel around the tumour)."""
    out = []
    for case in sorted(p for p in (shared_data / BRATS).iterdir() if p.is_dir())[:n]:
        label = np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj)
        centre = np.argwhere(label > 0).mean(0).astype(int)
        sl = tuple(slice(max(0, c - h), max(0, c - h) + 2 * h, 2) for c, h in zip(centre, (24, 24, 16)))
        flair, t1c = (np.asarray(nib.load(case / f"{m}_subtrMeanDivStd.nii.gz").dataobj)[sl].astype(np.float32)
                      for m in ("Flair", "T1c"))
        out.append((case.name, flair, t1c, (label[sl] > 0).astype(np.uint8)))
    return out


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture(scope="module")
def crops(shared_data):
    return _brats_crops(shared_data)


# -- NIfTI: oblique / flipped affines, labels on another grid ------------------------------------------------
def test_label_rotated_against_its_image_is_refused_naming_both_directions(crops, tmp_path):
    src = tmp_path / "src"
    for k, (case, flair, _, mask) in enumerate(crops):
        affine = _oblique_affine()
        _save(flair, affine, src / case / "flair.nii.gz")
        if k == 1:  # same shape, spacing and origin; the axes turned 10 degrees further
            affine = affine.copy()
            affine[:3, :3] = _rotation(2, 10) @ affine[:3, :3]
        _save(mask, affine, src / case / "seg.nii.gz")
    with pytest.raises(InputError) as caught:
        import_dataset(src, tmp_path / "ds", format="cases", progress=False)
    message = str(caught.value)
    assert message.startswith(str(src / crops[1][0] / "seg.nii.gz")) and "flair.nii.gz" in message
    assert message.count("direction [[") == 2  # the only difference is the direction: the message shows it
    assert not (tmp_path / "ds").exists()


def test_oblique_and_flipped_cases_predict_on_the_input_grid(crops, tmp_path):
    src = tmp_path / "src"
    for k, (case, flair, _, mask) in enumerate(crops):
        affine = _oblique_affine(flip=k % 2 == 1)
        _save(flair, affine, src / case / "flair.nii.gz")
        _save(mask, affine, src / case / "seg.nii.gz")
    ds = tmp_path / "ds"
    import_dataset(src, ds, format="cases", n_folds=3, progress=False)
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True)
    out = api.predict(run, [ds], tmp_path / "out", quiet=True)
    for case, *_ in crops:
        pred, image = nib.load(out / f"{case}.nii.gz"), nib.load(src / case / "flair.nii.gz")
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)


# -- 4D NIfTI --------------------------------------------------------------------------------------------------
def test_4d_label_is_refused_at_import(crops, tmp_path):
    src = tmp_path / "src"
    for case, flair, _, mask in crops:
        _save(flair, _oblique_affine(), src / case / "flair.nii.gz")
        _save(np.stack([mask, mask], -1), _oblique_affine(), src / case / "seg.nii.gz")  # two equal volumes
    with pytest.raises(InputError, match=r"seg.nii.gz: label holds 2 volumes \(a 4D or vector image\); a mask is one"
                                         r" 3D volume"):
        import_dataset(src, tmp_path / "ds", format="cases", progress=False)
    assert not (tmp_path / "ds").exists()


def test_4d_label_is_refused_when_a_case_is_loaded(crops, tmp_path):
    case, flair, _, mask = crops[0]
    image = _save(flair, _oblique_affine(), tmp_path / "flair.nii.gz")
    label = _save(np.stack([mask, mask], -1), _oblique_affine(), tmp_path / "seg.nii.gz")
    manifest = Manifest(name="x", task="segmentation", dims=3, channels=["flair"], labels={"0": "bg", "1": "fg"},
                        cases=[Case(id=case, images=[str(image)], label=str(label))])
    with pytest.raises(InputError, match="label holds 2 volumes"):
        read_case_label(manifest.cases[0], manifest, reference=read_image(image))


def test_label_with_a_time_axis_of_one_is_a_3d_label(crops, tmp_path):
    src = tmp_path / "src"
    for case, flair, _, mask in crops:
        _save(flair[..., None], _oblique_affine(), src / case / "flair.nii.gz")  # (x, y, z, 1): one volume
        _save(mask[..., None], _oblique_affine(), src / case / "seg.nii.gz")
    m = import_dataset(src, tmp_path / "ds", format="cases", progress=False)
    assert (m.dims, m.channels, m.label_values) == (3, ["flair"], [0, 1])


def test_4d_channel_file_in_a_cases_layout_gives_one_channel_per_volume(crops, tmp_path):
    src = tmp_path / "src"
    for case, flair, t1c, mask in crops:
        _save(np.stack([flair, t1c], -1), _oblique_affine(), src / case / "mr.nii.gz")
        _save(mask, _oblique_affine(), src / case / "seg.nii.gz")
    m = import_dataset(src, tmp_path / "ds", format="cases", progress=False)
    assert m.channels == ["mr_0", "mr_1"] and m.modality == {"0": "MR", "1": "MR"}
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["channels"] == ["mr_0", "mr_1"]


# -- DICOM series: missing slice, uneven steps -----------------------------------------------------------------
def _write_series(volume: np.ndarray, folder: Path, uid: str, positions: list[float]) -> Path:
    """One DICOM file per slice of a real (x, y, z) volume, each at its own ImagePositionPatient."""
    folder.mkdir(parents=True)  # a fresh folder each time
    return write_dicom_series(volume, folder, STUDY_UID, uid, positions)


@pytest.fixture(scope="module")
def series_volume(crops):
    return np.clip(crops[0][1] * 200 + 1000, 0, 4000).astype(np.int16)  # FLAIR crop as MR-like integers


def test_regular_series_reads_with_its_slice_step(series_volume, tmp_path):
    n = series_volume.shape[2]
    folder = _write_series(series_volume, tmp_path / "s", "1.2.826.0.1.3680043.2.1125.21", [2.0 * k for k in range(n)])
    image = read_image(folder)
    np.testing.assert_array_equal(image.array[0], series_volume)
    assert image.spacing == (2.0, 2.0, 2.0) and read_header(folder).spacing == (2.0, 2.0, 2.0)


def test_series_with_a_missing_slice_is_refused_naming_the_gap(series_volume, tmp_path):
    n = series_volume.shape[2]
    keep = [k for k in range(n) if k != 8]
    folder = _write_series(series_volume[..., keep], tmp_path / "s", "1.2.826.0.1.3680043.2.1125.22",
                           [2.0 * k for k in keep])
    for read in (read_image, read_header):
        with pytest.raises(InputError) as caught:
            read(folder)
        message = str(caught.value)
        assert message.startswith(f"{folder}: series 1.2.826.0.1.3680043.2.1125.22: about 1 slice(s) missing")
        assert "4 mm between slice_007.dcm and slice_008.dcm, 2 mm between most slices" in message


def test_series_with_uneven_slice_steps_is_refused(series_volume, tmp_path):
    n = series_volume.shape[2]
    positions = [2.0 * k if k < 8 else 14.0 + 3.0 * (k - 7) for k in range(n)]  # 2 mm, then 3 mm steps
    folder = _write_series(series_volume, tmp_path / "src" / "s", "1.2.826.0.1.3680043.2.1125.23", positions)
    with pytest.raises(InputError, match="uneven slice spacing") as caught:
        read_image(folder)
    assert str(caught.value).startswith(str(folder)) and "resample the series" in str(caught.value)
    out = tmp_path / "ds"
    with pytest.raises(InputError, match="uneven slice spacing"):
        import_dataset(tmp_path / "src", out, format="dicom", progress=False)
    assert not out.exists()


# -- masks of inputs whose format cannot hold them ---------------------------------------------------------------
def test_3d_run_predicts_a_dicom_series_as_nifti_on_its_grid(crops, series_volume, tmp_path):
    src = tmp_path / "src"
    for case, flair, _, mask in crops:
        _save(flair, _oblique_affine(), src / case / "flair.nii.gz")
        _save(mask, _oblique_affine(), src / case / "seg.nii.gz")
    ds = tmp_path / "ds"
    import_dataset(src, ds, format="cases", n_folds=3, progress=False)
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True)
    n = series_volume.shape[2]
    series = _write_series(series_volume, tmp_path / "dicom" / "s1", "1.2.826.0.1.3680043.2.1125.24",
                           [2.0 * k for k in range(n)])
    dicom_ds = tmp_path / "dicom_ds"
    import_dataset(tmp_path / "dicom", dicom_ds, format="dicom", progress=False)
    out = api.predict(run, [dicom_ds], tmp_path / "out", quiet=True)
    pred, image = read_image(out / "s1.nii.gz"), read_image(series)
    assert pred.spatial_shape == image.spatial_shape and pred.same_geometry(image, atol=1e-4)


def test_2d_run_writes_jpeg_masks_as_png_and_metaimage_masks_as_metaimage(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "em", shared_data, n=4, size=64)
    ds = tmp_path / "ds"
    import_dataset(src, ds, format="pairs", n_folds=2, progress=False)
    shrink_plan(ds, epochs=1)
    run = api.train(ds, fold=0, quiet=True)
    jpeg = tmp_path / "em_07.jpg"
    PILImage.fromarray(np.asarray(PILImage.open(shared_data / "isbi2012_em/images/7.png"))[:64, :72]).save(jpeg)
    mhd = shared_data / "io_samples/itk_examples/BrainProtonDensitySliceBorder20DirectionPlus30.mhd"
    out = api.predict(run, [jpeg, mhd], tmp_path / "out", quiet=True)
    png = read_image(out / "em_07.png")  # a JPEG mask would change label values at every edge
    assert png.spatial_shape == (64, 72) and set(np.unique(png.array)) <= {0, 1}
    metaimage = read_image(out / "BrainProtonDensitySliceBorder20DirectionPlus30.mhd")  # its data file beside
    assert metaimage.same_geometry(read_image(mhd))  # the rotated 2D frame kept
    assert (out / "BrainProtonDensitySliceBorder20DirectionPlus30.zraw").is_file()
