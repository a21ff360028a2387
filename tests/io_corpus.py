"""A corpus of broken image files, each made from a real file, for tests that check error messages.

Import it as ``from io_corpus import make_corrupt_corpus`` (tests/ is on the test path).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

SHARED_DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
KMEANS_T1 = "io_samples/itk_examples/KmeansTest_T1UCharRaw.nii.gz"
BRAIN_PNG = "io_samples/itk_examples/BrainProtonDensitySliceBorder20.png"
BRAIN_NRRD = "io_samples/pyradiomics/brain1_image.nrrd"


def _cut(source: Path, target: Path, keep: float) -> Path:
    """Copy the first ``keep`` fraction of ``source``'s bytes to ``target``."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def make_corrupt_corpus(tmp_dir: str | Path, shared_data: str | Path | None = None) -> dict[str, Path]:
    """Write broken files into ``tmp_dir``; returns {kind: path}. Every one must make read_image raise InputError.

    Kinds: truncated_nii_gz, truncated_nii, truncated_nrrd, truncated_png, corrupt_dicom (bytes cut from
    pydicom's CT_small.dcm), nan_nifti (a real T1 as float32 with NaN and Inf voxels), unknown_format.
    """
    from pydicom.data import get_testdata_file

    data = Path(shared_data) if shared_data is not None else SHARED_DATA
    out = Path(tmp_dir)
    out.mkdir(parents=True, exist_ok=True)
    t1 = nib.load(data / KMEANS_T1)
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj), t1.affine, t1.header), out / "t1_full.nii")
    voxels = np.asarray(t1.dataobj).astype(np.float32)
    voxels[10, 20, 30] = np.nan
    voxels[40, 50, 31] = np.inf
    nan_path = out / "t1_with_nan.nii.gz"
    nib.save(nib.Nifti1Image(voxels, t1.affine), nan_path)
    unknown = out / "notes.xyz"
    shutil.copyfile(data / BRAIN_PNG, unknown)
    corpus = {
        "truncated_nii_gz": _cut(data / KMEANS_T1, out / "t1_truncated.nii.gz", 0.5),
        "truncated_nii": _cut(out / "t1_full.nii", out / "t1_truncated.nii", 0.5),
        "truncated_nrrd": _cut(data / BRAIN_NRRD, out / "brain_truncated.nrrd", 0.6),
        "truncated_png": _cut(data / BRAIN_PNG, out / "slice_truncated.png", 0.6),
        "corrupt_dicom": _cut(Path(get_testdata_file("CT_small.dcm")), out / "ct_cut.dcm", 0.6),
        "nan_nifti": nan_path,
        "unknown_format": unknown,
    }
    (out / "t1_full.nii").unlink()
    return corpus
