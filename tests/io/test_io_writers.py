"""write_image -> read_image round trips on real data; atomic writes; refusals with clear errors."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.errors import InputError
from medsight.io import Image, read_header, read_image, write_image

ITK = "io_samples/itk_examples"
T1 = f"{ITK}/KmeansTest_T1UCharRaw.nii.gz"


def _assert_same(written: Image, original: Image) -> None:
    assert written.array.dtype == original.array.dtype
    np.testing.assert_array_equal(written.array, original.array)
    assert written.same_geometry(original, atol=1e-6)
    np.testing.assert_allclose(written.affine_lps, original.affine_lps, atol=1e-5)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".npz"])
def test_3d_round_trip_keeps_voxels_and_geometry(shared_data, tmp_path, suffix):
    original = read_image(shared_data / "io_samples/pyradiomics/brain1_image.nrrd")  # oblique-free, y flipped
    _assert_same(read_image(write_image(original, tmp_path / f"brain{suffix}")), original)
    permuted = read_image(shared_data / T1)  # axes permuted between voxel and world
    _assert_same(read_image(write_image(permuted, tmp_path / f"t1{suffix}")), permuted)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".npz"])
def test_2d_rotated_round_trip_keeps_direction(shared_data, tmp_path, suffix):
    original = read_image(shared_data / ITK / "BrainProtonDensitySliceShifted13x17yDirectionPlus30.mhd")
    _assert_same(read_image(write_image(original, tmp_path / f"slice{suffix}")), original)
    anisotropic = read_image(shared_data / ITK / "ResampleImageFilterInput2x3.mha")  # spacing (3, 2)
    _assert_same(read_image(write_image(anisotropic, tmp_path / f"aniso{suffix}")), anisotropic)


def test_nifti_xform_codes_default_and_from_reference(shared_data, tmp_path):
    image = read_image(shared_data / T1)
    plain = nib.load(write_image(image, tmp_path / "plain.nii.gz"))
    assert (int(plain.header["qform_code"]), int(plain.header["sform_code"])) == (1, 1)
    kept = nib.load(write_image(image, tmp_path / "kept.nii.gz", reference=shared_data / T1))
    assert (int(kept.header["qform_code"]), int(kept.header["sform_code"])) == (2, 1)  # the reference's codes
    np.testing.assert_allclose(kept.affine, nib.load(shared_data / T1).affine, atol=1e-6)


def test_multichannel_3d_nifti_round_trip(shared_data, tmp_path):
    image = read_image(shared_data / "io_samples/pyradiomics/brain1_image.nrrd")
    label = read_image(shared_data / "io_samples/pyradiomics/brain1_label.nrrd")
    stacked = image.with_array(np.concatenate([image.array, label.array.astype(np.int16)]), ["T1", "label"])
    path = write_image(stacked, tmp_path / "two_channels.nii.gz")
    on_disk = nib.load(path)
    assert on_disk.shape == (256, 256, 25, 2)  # MSD layout: channels on the 4th axis
    back = read_image(path)
    np.testing.assert_array_equal(back.array, stacked.array)
    np.testing.assert_array_equal(np.asarray(on_disk.dataobj)[..., 1], label.array[0])


def test_array_saved_by_nibabel_with_identity_affine_reads_back_identical(shared_data, tmp_path):
    data = np.asarray(nib.load(shared_data / T1).dataobj)[:50, :60, :7]
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "identity.nii.gz")
    image = read_image(tmp_path / "identity.nii.gz")
    np.testing.assert_array_equal(image.array[0], data)
    np.testing.assert_allclose(image.affine, np.eye(4))
    flat = data[:, :, 3]
    nib.save(nib.Nifti1Image(flat, np.eye(4)), tmp_path / "flat.nii.gz")  # 2D NIfTI
    np.testing.assert_array_equal(read_image(tmp_path / "flat.nii.gz").array[0], flat)


@pytest.mark.parametrize("source", ["drive/training/images/24_training.tif", f"{ITK}/BrainT1Slice.png",
                                    "isbi2012_em/images/3.png"])
def test_array_saved_by_pil_reads_back_identical(shared_data, tmp_path, source):
    pixels = np.asarray(PILImage.open(shared_data / source).convert("RGB" if "tif" in source else "L"))
    PILImage.fromarray(pixels).save(tmp_path / "pil.png")
    image = read_image(tmp_path / "pil.png")
    expected = np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels[None]
    np.testing.assert_array_equal(image.array, expected)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".npy"])
def test_2d_grey_and_rgb_round_trip(shared_data, tmp_path, suffix):
    for source in ("drive/training/images/25_training.tif", "drive/training/mask/25_training_mask.gif"):
        original = read_image(shared_data / source)
        back = read_image(write_image(original, tmp_path / f"{original.num_channels}{suffix}"))
        np.testing.assert_array_equal(back.array, original.array)
        assert back.channel_names == original.channel_names


def test_16_bit_png_kept(shared_data, tmp_path):
    phantom = read_image(shared_data / "io_samples/pyradiomics/prostate_phantom_subvolume.nrrd")  # uint16
    plane = Image(np.ascontiguousarray(phantom.array[:, :, :, 6]))
    assert plane.array.max() > 255
    back = read_image(write_image(plane, tmp_path / "plane16.png"))
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, plane.array)
    assert read_header(tmp_path / "plane16.png").dtype == np.uint16


def test_float_png_refused_unless_values_are_integers(shared_data, tmp_path):
    slice_ = read_image(shared_data / f"{ITK}/CorpusCallosumMeanShape.mha")  # float32 shape model
    with pytest.raises(InputError, match=r"mean\.png: \.png cannot hold non-integer"):
        write_image(slice_, tmp_path / "mean.png")
    assert not list(tmp_path.iterdir())  # nothing half-written, no temp file left
    mask = read_image(shared_data / "drive/training/1st_manual/26_manual1.gif")
    as_float = mask.with_array(mask.array.astype(np.float32) / 255.0)
    back = read_image(write_image(as_float, tmp_path / "mask01.png"))
    assert back.array.dtype == np.uint8 and set(np.unique(back.array).tolist()) == {0, 1}
    float_tif = read_image(write_image(slice_, tmp_path / "mean.tif"))
    np.testing.assert_array_equal(float_tif.array, slice_.array)


def test_refusals_name_the_target(tmp_path):
    volume = Image(np.zeros((1, 4, 5, 6), np.uint8))
    with pytest.raises(InputError, match=r"vol\.png: \.png holds a 2D image"):
        write_image(volume, tmp_path / "vol.png")
    with pytest.raises(InputError, match=r"vol\.dcm: cannot write images as '\.dcm' \(use one of \.nii\.gz"):
        write_image(volume, tmp_path / "vol.dcm")
    with pytest.raises(InputError, match=r"big\.png: pixel values 0\.\.70000"):
        write_image(Image(np.array([[[0, 70000]]], np.int32)), tmp_path / "big.png")


@pytest.mark.parametrize("ext, data_file, field", [(".mhd", "case.zraw", "ElementDataFile = case.zraw"),
                                                   (".nhdr", "case.raw.gz", "data file: case.raw.gz")])
def test_detached_headers_name_their_data_file(shared_data, tmp_path, ext, data_file, field):
    original = read_image(shared_data / ITK / "BrainProtonDensitySliceShifted13x17yDirectionPlus30.mhd")
    path = write_image(original, tmp_path / f"case{ext}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"case{ext}", data_file])  # no temporaries left
    assert field in path.read_text(encoding="latin-1")
    back = read_image(path)
    assert back.same_geometry(original) and np.array_equal(back.array, original.array)
    write_image(original.with_array(original.array // 2), path)  # written again: the header names the new data
    assert np.array_equal(read_image(path).array, original.array // 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"case{ext}", data_file])


def test_write_is_atomic_and_creates_folders(shared_data, tmp_path):
    image = read_image(shared_data / f"{ITK}/BrainT1Slice.png")
    target = tmp_path / "deep" / "er" / "slice.png"
    assert write_image(image, target) == target and target.is_file()
    before = target.read_bytes()
    with pytest.raises(InputError):
        write_image(image.with_array(image.array.astype(np.float32) + 0.5), target)
    assert target.read_bytes() == before  # the old file is untouched by a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["slice.png"]


def test_medmnist_sample_written_as_png_and_nifti_reads_the_same(shared_data, tmp_path):
    npz = shared_data / "medmnist"
    sample = read_image(f"{npz / 'retinamnist.npz'}::train_images::11")
    np.testing.assert_array_equal(read_image(write_image(sample, tmp_path / "r.png")).array, sample.array)
    volume = read_image(f"{npz / 'adrenalmnist3d.npz'}::train_images::3")
    np.testing.assert_array_equal(read_image(write_image(volume, tmp_path / "a.nii.gz")).array, volume.array)
    np.testing.assert_array_equal(read_image(write_image(volume, tmp_path / "a.npy")).array, volume.array)


def test_npy_of_a_three_slice_volume_is_not_mistaken_for_rgb(shared_data, tmp_path):
    volume = read_image(shared_data / f"{ITK}/BrainProtonDensity3Slices.mha")  # 181 x 217 x 3
    back = read_image(write_image(volume, tmp_path / "three.npy"))
    assert back.array.shape == (1, 181, 217, 3)
    np.testing.assert_array_equal(back.array, volume.array)
