"""DICOM series: several series in one folder told apart, slices sorted by position, not by file name."""
from __future__ import annotations

import random

import numpy as np
import pytest
import SimpleITK as sitk

from medsight.errors import InputError
from medsight.io import list_dicom_series, read_header, read_image, read_series

BREAST_UID = "1.2.826.0.1.3680043.2.1125.101"
BRAIN_UID = "1.2.826.0.1.3680043.2.1125.102"
BRAIN_SLICES = slice(5, 12)
STUDY_UID = "1.2.826.0.1.3680043.2.1125.1"


def _write_series(volume: sitk.Image, folder, uid: str, description: str, names: list[str]) -> None:
    """Write each slice of a real volume as one DICOM file carrying its own position and orientation."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = volume.GetDirection()
    orientation = "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    for k in range(volume.GetDepth()):
        plane = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0020|000e": uid, "0008|103e": description, "0008|0060": "MR", "0020|000d": STUDY_UID,
                "0020|0032": "\\".join(str(v) for v in position), "0020|0037": orientation, "0020|0013": str(k + 1),
                "0008|0018": f"{uid}.{k + 1}", "0018|0050": str(volume.GetSpacing()[2])}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{names[k]}.dcm"))
        writer.Execute(plane)


@pytest.fixture(scope="module")
def series_folder(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom")
    rng = random.Random(0)
    breast = sitk.ReadImage(str(shared_data / "io_samples/pyradiomics/breast1_image.nrrd"))
    brain = sitk.ReadImage(str(shared_data / "io_samples/pyradiomics/brain1_image.nrrd"))[:, :, BRAIN_SLICES]
    # shuffled names: file order says nothing about slice order
    for volume, uid, description in ((breast, BREAST_UID, "breast"), (brain, BRAIN_UID, "brain")):
        names = [f"x{n:03d}" for n in rng.sample(range(999), volume.GetDepth())]
        _write_series(volume, folder, uid, description, names)
    return folder


def test_two_series_in_one_folder_are_told_apart(series_folder):
    found = {s.uid: s for s in list_dicom_series(series_folder)}
    assert set(found) == {BREAST_UID, BRAIN_UID}
    breast = found[BREAST_UID]
    assert (breast.num_files, breast.description, breast.modality) == (21, "breast", "MR")
    assert found[BRAIN_UID].num_files == 7


def test_several_series_without_uid_is_an_input_error_listing_them(series_folder):
    with pytest.raises(InputError) as caught:
        read_series(series_folder)
    message = str(caught.value)
    assert message.startswith(str(series_folder)) and BREAST_UID in message and BRAIN_UID in message
    with pytest.raises(InputError, match="no series 1.2.3 here"):
        read_series(series_folder, "1.2.3")


def test_series_reads_back_the_volume_it_was_written_from(shared_data, series_folder):
    original = read_image(shared_data / "io_samples/pyradiomics/breast1_image.nrrd")
    series = read_series(series_folder, BREAST_UID)
    np.testing.assert_array_equal(series.array, original.array)
    assert series.same_geometry(original, atol=1e-4)


def test_slices_sorted_by_position_along_the_normal(shared_data, series_folder):
    # brain1 has direction diag(1, -1, 1): the slice normal (row x column) points to -z, so GDCM orders
    # slices from high z to low z; each voxel must still sit at the same physical point.
    original = read_image(shared_data / "io_samples/pyradiomics/brain1_image.nrrd")
    part = original.array[..., BRAIN_SLICES]
    series = read_series(series_folder, BRAIN_UID)
    np.testing.assert_array_equal(series.array, part[..., ::-1])
    voxel = np.array([30.0, 40.0, 2.0, 1.0])
    same_voxel_in_original = np.array([30.0, 40.0, BRAIN_SLICES.start + 6 - 2, 1.0])
    np.testing.assert_allclose(series.affine_lps @ voxel, original.affine_lps @ same_voxel_in_original, atol=1e-4)


def test_series_header_from_first_and_last_file(series_folder, tmp_path):
    single = tmp_path / "one_series"
    single.mkdir()
    for path in list_dicom_series(series_folder)[0].files:
        (single / path.split("/")[-1]).write_bytes(open(path, "rb").read())
    info, image = read_header(single), read_image(single)  # a folder reads as its one series
    assert info.spatial_shape == image.spatial_shape
    np.testing.assert_allclose(info.spacing, image.spacing, rtol=1e-5)
    np.testing.assert_allclose(info.origin, image.origin, atol=1e-4)
    np.testing.assert_allclose(info.direction, image.direction, atol=1e-6)


def test_a_folder_is_scanned_once_until_its_files_change(shared_data, tmp_path, monkeypatch):
    """`predict` checks a series folder, then reads it: the second look neither scans (GDCM) nor reads the
    slice headers again; a file changed or added in between is seen."""
    import os

    from medsight.io import dicom

    brain = sitk.ReadImage(str(shared_data / "io_samples/pyradiomics/brain1_image.nrrd"))[:, :, BRAIN_SLICES]
    _write_series(brain, tmp_path, BRAIN_UID, "brain", [f"s{k}" for k in range(brain.GetDepth())])
    scans, header_reads = [], []
    scan, positions = dicom._scan_series, dicom._slice_positions
    monkeypatch.setattr(dicom, "_scan_series", lambda folder: scans.append(folder) or scan(folder))
    monkeypatch.setattr(dicom, "_slice_positions", lambda files: header_reads.append(len(files)) or positions(files))
    first = list_dicom_series(tmp_path)
    dicom.check_slice_spacing(tmp_path, first[0])
    image = read_series(tmp_path)
    assert len(scans) == 1 and header_reads == [brain.GetDepth()]
    assert image.array.shape[-3:] == brain.GetSize()  # (x, y, z)
    stat = os.stat(tmp_path / "s0.dcm")
    os.utime(tmp_path / "s0.dcm", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    read_series(tmp_path)
    assert len(scans) == 2 and len(header_reads) == 2
