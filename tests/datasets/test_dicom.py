"""``dicom`` importer: series folders built from real slices (pydicom's CT_small.dcm and MR_small.dcm)."""
from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medsight.datasets import detect_format, import_dataset
from medsight.errors import InputError
from medsight.io import read_image


def _write_series(source: str, folder: Path, n_slices: int, patient: str) -> str:
    """Copies of one real slice stacked along the slice normal as a new series; returns its UID."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for k in range(n_slices):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.PatientID = patient
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * k]
        ds.SliceThickness = 2.5
        ds.save_as(folder / f"slice_{(7 * k) % n_slices:03d}.dcm")  # file order differs from slice order
    return series_uid


@pytest.fixture(scope="module")
def dicom_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dicom") / "study"
    ct, mr = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
    _write_series(ct, root / "p1" / "ct_a", 4, "P1")
    _write_series(ct, root / "p1" / "ct_b", 3, "P1")
    _write_series(mr, root / "p2" / "mr", 5, "P2")
    return root


def test_series_folders_with_csv_labels(dicom_tree: Path, tmp_path: Path):
    assert detect_format(dicom_tree) == "dicom"
    assert detect_format(dicom_tree / "p1") == "dicom"  # series folders side by side are not "cases"
    csv_path = tmp_path / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([["series", "label"], ["ct_a", "positive"], ["ct_b", "negative"],
                                 ["mr", "positive"]])
    m = import_dataset(dicom_tree, tmp_path / "ds", task="classification", csv=str(csv_path), progress=False)
    assert [c.id for c in m.cases] == ["p1_ct_a", "p1_ct_b", "p2_mr"]
    assert [c.group for c in m.cases] == ["P1", "P1", "P2"]
    assert m.labels == {"0": "negative", "1": "positive"} and [c.label for c in m.cases] == [1, 0, 1]
    assert (m.dims, m.channels, m.modality) == (3, ["CT"], {"0": "CT"})
    image = read_image(m.cases[0].images[0])
    assert image.spatial_shape == (128, 128, 4) and abs(image.spacing[2] - 2.5) < 1e-3
    assert len(m.splits) == 2  # two patients: two folds, a patient's series together
    assert {frozenset(s["val"]) for s in m.splits} == {frozenset({"p1_ct_a", "p1_ct_b"}), frozenset({"p2_mr"})}


def test_unlabeled_series_for_predict(dicom_tree: Path, tmp_path: Path):
    m = import_dataset(dicom_tree / "p2", tmp_path / "ds", progress=False)
    assert [c.id for c in m.cases] == ["mr"] and m.cases[0].label is None and m.labels == {}
    assert any("unlabeled" in w for w in m.extra["warnings"])


def test_csv_without_a_series(dicom_tree: Path, tmp_path: Path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("series,label\nct_a,1\nmr,0\n")
    with pytest.raises(InputError, match=r"labels.csv: has no label for series p1_ct_b"):
        import_dataset(dicom_tree, tmp_path / "ds", format="dicom", csv=str(csv_path), progress=False)
