"""Shared fixtures: the real data in ../shared/data (CI has it beside the clone)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (CI has it beside the clone)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch to the machine's cores so parallel pieces of the suite do not oversubscribe."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture()
def tiny_breast(tmp_path) -> Path:
    """An imported 64-case BreastMNIST dataset with a tiny, edited plan (2 epochs)."""
    from helpers import shrink_plan, write_npz_subset

    from medsight import api

    src = write_npz_subset(tmp_path / "breast_small.npz")
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, progress=False)
    shrink_plan(ds)
    return ds


BRATS_CASE = "brats_examples/brats_2013_pat0003_1"
BRATS_CROP = (slice(50, 170), slice(100, 220), slice(50, 146))  # 120 x 120 x 96 voxels holding the whole tumour


@pytest.fixture(scope="session")
def brats_crop(shared_data):
    """(image (2, 120, 120, 96) float32, label (1, 120, 120, 96) uint8), C-ordered."""
    nib = pytest.importorskip("nibabel")
    folder = shared_data / BRATS_CASE
    image = np.stack([np.asarray(nib.load(folder / f).dataobj, dtype=np.float32)[BRATS_CROP]
                      for f in ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")])
    label = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj)[BRATS_CROP].astype(np.uint8)[None]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
