"""Extensions, case names and array refs (hand-written expectations)."""
from __future__ import annotations

from pathlib import Path

import pytest

from medsight.io import image_extension, image_stem, parse_array_ref
from medsight.io.formats import ArrayRef, format_family


@pytest.mark.parametrize("name, ext, stem", [
    ("scan_0003.nii.gz", ".nii.gz", "scan_0003"), ("CT.NII", ".nii", "CT"),
    ("drive_21_0000.png", ".png", "drive_21_0000"),
    ("seg.label.nrrd", ".nrrd", "seg.label"), ("notes.txt", "", "notes"), ("IM0001", "", "IM0001"),
])
def test_extension_and_stem(name, ext, stem):
    assert image_extension(f"/data/{name}") == ext
    assert image_stem(f"/data/{name}") == stem


def test_array_refs():
    expected = ArrayRef(Path("/d/breastmnist.npz"), "train_images", 12)
    assert parse_array_ref("/d/breastmnist.npz::train_images::12") == expected
    assert parse_array_ref("/d/scan.npz::seg") == ArrayRef(Path("/d/scan.npz"), "seg", None)
    assert parse_array_ref("/d/scan.npz") == ArrayRef(Path("/d/scan.npz"))
    with pytest.raises(ValueError, match="not an integer"):
        parse_array_ref("/d/a.npz::k::first")


def test_dicom_found_by_preamble_not_name(tmp_path):
    fake = tmp_path / "IM0002"
    fake.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    other = tmp_path / "IM0003"
    other.write_bytes(b"\0" * 200)
    assert format_family(fake) == "dicom" and format_family(other) == ""


def test_spacing_is_lacking_in_raster_files_and_arrays_only(tmp_path):
    from medsight.io.formats import lacks_spacing

    dicom = tmp_path / "IM0004"
    dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    series = tmp_path / "series"
    series.mkdir()
    for ref in ("/d/cxr.png", "/d/fundus.TIF", "/d/slice.jpg", "/d/x.npy", "/d/mnist.npz::train_images::3"):
        assert lacks_spacing(ref), ref
    for ref in ("/d/ct.nii.gz", "/d/mr.nrrd", "/d/us.mha", dicom, series):
        assert not lacks_spacing(ref), ref
