"""A real BraTS crop (FLAIR + T1c, OTMultiClass label) around the tumour, loaded once per session."""
from __future__ import annotations

import numpy as np
import pytest

CASE = "brats_examples/brats_2013_pat0003_1"
CROP = (slice(50, 170), slice(100, 220), slice(50, 146))  # 120 x 120 x 96 voxels holding the whole tumour


@pytest.fixture(scope="session")
def brats_crop(shared_data):
    """(image (2, 120, 120, 96) float32, label (1, 120, 120, 96) uint8), C-ordered."""
    nib = pytest.importorskip("nibabel")
    folder = shared_data / CASE
    image = np.stack([np.asarray(nib.load(folder / f).dataobj, dtype=np.float32)[CROP]
                      for f in ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")])
    label = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj)[CROP].astype(np.uint8)[None]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
