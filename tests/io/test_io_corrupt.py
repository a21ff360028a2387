"""Broken files made from real ones: each must raise one InputError line naming the file."""
from __future__ import annotations

import numpy as np
import pytest
from io_corpus import make_corrupt_corpus

from medsight.errors import InputError
from medsight.io import read_header, read_image


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    return make_corrupt_corpus(tmp_path_factory.mktemp("corrupt"), shared_data)


EXPECTED_PROBLEM = {
    "truncated_nii_gz": "truncated or corrupt NIfTI (expected 2.0 MB of voxels, file ends early)",
    "truncated_nii": "truncated or corrupt NIfTI (expected 2.0 MB of voxels, file ends early)",
    "truncated_nrrd": "truncated or corrupt NRRD",
    "truncated_png": "truncated or corrupt PNG",
    "corrupt_dicom": "truncated or corrupt DICOM",
    "nan_nifti": "2 of 1015808 voxels are NaN or Inf",
    "unknown_format": "unknown image format '.xyz'",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_PROBLEM))
def test_broken_file_raises_one_line_naming_it(corpus, kind):
    path = corpus[kind]
    with pytest.raises(InputError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert EXPECTED_PROBLEM[kind] in message
    assert "\n" not in message


def test_truncated_nifti_expected_size_is_the_voxel_bytes(corpus):
    # 128 x 128 x 62 int16 voxels = 2,031,616 bytes, reported as 2.0 MB
    header = read_header(corpus["truncated_nii_gz"])  # the header alone is intact: no voxels are read
    assert header.spatial_shape == (128, 128, 62) and header.dtype == np.int16


def test_corrupt_dicom_message_gives_pydicom_diagnosis(corpus):
    with pytest.raises(InputError, match=r"number of bytes of pixel data is less than expected"):
        read_image(corpus["corrupt_dicom"])


def test_nan_check_can_be_turned_off(corpus):
    image = read_image(corpus["nan_nifti"], check_finite=False)
    assert np.isnan(image.array[0, 10, 20, 30]) and np.isinf(image.array[0, 40, 50, 31])
    assert int(np.count_nonzero(~np.isfinite(image.array))) == 2


def test_missing_file_and_folder_without_dicom(tmp_path):
    with pytest.raises(InputError, match=r"missing\.nii\.gz: file not found"):
        read_image(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="no DICOM series found"):
        read_image(tmp_path)


def test_array_that_is_not_an_image(shared_data):
    labels = shared_data / "io_samples/voxelmorph_brain/labels.npz"  # the list of 30 label values
    with pytest.raises(InputError, match=r"labels\.npz: an array of shape \(30,\) is not a 2D/3D image"):
        read_image(labels)
