"""read_image / read_header on real files: axis order, geometry against the headers, dtypes, channels."""
from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medsight.io import read_header, read_image
from medsight.io.sitk_io import read_sitk

ITK = "io_samples/itk_examples"
PYRAD = "io_samples/pyradiomics"


def test_nrrd_anisotropic_spacing_matches_header(shared_data):
    # brain1_image.nrrd header: sizes 256 256 25, space directions (0.78125,0,0) (0,-0.78125,0) (0,0,6.5),
    # space origin (-99.609375, 99.609375, -78), type short, LPS space
    image = read_image(shared_data / PYRAD / "brain1_image.nrrd")
    assert image.array.shape == (1, 256, 256, 25) and image.array.dtype == np.int16
    assert image.spacing == pytest.approx((0.78125, 0.78125, 6.5))
    assert image.origin == pytest.approx((-99.609375, 99.609375, -78.0))
    np.testing.assert_allclose(image.direction, np.diag([1.0, -1.0, 1.0]))
    breast = read_image(shared_data / PYRAD / "breast1_image.nrrd")  # (0.664062, 0.664062, 2.1)
    assert breast.spatial_shape == (45, 120, 21)
    assert breast.spacing == pytest.approx((0.664062, 0.664062, 2.1))


def test_nrrd_voxels_are_sitk_voxels_transposed(shared_data):
    path = shared_data / PYRAD / "prostate_phantom_subvolume-label.nrrd"
    image = read_image(path)
    zyx = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(image.array[0], zyx.transpose(2, 1, 0))
    assert set(np.unique(image.array).tolist()) == {0, 1, 7, 8, 9}  # labels stay integers
    assert image.array.dtype.kind in "iu"


def test_2d_metaimage_keeps_rows_columns_and_reverses_spacing(shared_data):
    # ResampleImageFilterInput2x3.mha: DimSize = 90 72 (x, y), ElementSpacing = 2 3 (x, y)
    image = read_image(shared_data / ITK / "ResampleImageFilterInput2x3.mha")
    assert image.spatial_shape == (72, 90)  # rows = y, columns = x
    assert image.spacing == (3.0, 2.0)


@pytest.mark.parametrize("name", ["BrainProtonDensitySliceBorder20DirectionPlus30.nhdr",
                                  "BrainProtonDensitySliceShifted13x17yDirectionPlus30.mhd"])
def test_direction_cosines_of_a_30_degree_rotation(shared_data, name):
    # header: x axis (cos 30, sin 30), y axis (-sin 30, cos 30); our geometry is in (row=y, column=x) order
    path = shared_data / ITK / name
    image = read_image(path)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    column_axis_xy = image.direction[::-1, 1]  # unit vector of array axis 1 (x), written as (x, y)
    row_axis_xy = image.direction[::-1, 0]
    np.testing.assert_allclose(column_axis_xy, [c, s], atol=1e-6)
    np.testing.assert_allclose(row_axis_xy, [-s, c], atol=1e-6)
    # the physical point of voxel (row 40, column 100) is the one SimpleITK gives for index (x=100, y=40)
    point_yx = (image.affine_lps @ np.array([40.0, 100.0, 1.0]))[:2]
    expected_xy = sitk.ReadImage(str(path)).TransformIndexToPhysicalPoint((100, 40))
    np.testing.assert_allclose(point_yx[::-1], expected_xy, atol=1e-5)


def test_nifti_affine_converted_to_lps(shared_data):
    # KmeansTest srow: x = (-2, 0, 0, 0), y = (0, 0, 3, -254), z = (0, 2, 0, 0)  (RAS)
    # LPS: axis i -> (2, 0, 0), axis j -> (0, 0, 2), axis k -> (0, -3, 0), origin (0, 254, 0)
    image = read_image(shared_data / ITK / "KmeansTest_T1UCharRaw.nii.gz")
    assert image.array.shape == (1, 128, 128, 62) and image.array.dtype == np.int16
    assert image.spacing == pytest.approx((2.0, 2.0, 3.0))
    assert image.origin == pytest.approx((0.0, 254.0, 0.0))
    np.testing.assert_allclose(image.direction, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(image.affine, nib.load(shared_data / ITK / "KmeansTest_T1UCharRaw.nii.gz").affine)


@pytest.mark.parametrize("name", [f"{ITK}/KmeansTest_T1UCharRaw.nii.gz", "io_samples/voxelmorph_brain/test_vol.nii.gz"])
def test_simpleitk_and_nibabel_paths_agree(shared_data, name):
    path = shared_data / name
    via_nibabel = read_image(path)
    via_sitk = read_sitk(path, rows_first_2d=False)
    np.testing.assert_array_equal(via_nibabel.array, via_sitk.array.astype(via_nibabel.array.dtype))
    assert via_nibabel.same_geometry(via_sitk, atol=1e-5)


def test_voxelmorph_volume_and_its_46_labels(shared_data):
    folder = shared_data / "io_samples/voxelmorph_brain"
    volume = read_image(folder / "test_vol.nii.gz")
    assert volume.array.shape == (1, 160, 192, 224) and volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.affine, np.eye(4))  # nibabel identity affine: same array, no flips
    seg = read_image(f"{folder / 'test_scan.npz'}::seg")
    assert seg.spatial_shape == volume.spatial_shape
    assert len(np.unique(seg.array)) == 46
    vol_from_npz = read_image(f"{folder / 'test_scan.npz'}::vol")
    np.testing.assert_allclose(vol_from_npz.array, volume.array, atol=1e-6)  # same scan, two files


def test_png_palette_grey_equals_metaimage_of_the_same_slice(shared_data):
    png = read_image(shared_data / ITK / "BrainProtonDensitySliceBorder20.png")  # palette PNG, grey entries
    mhd = read_image(shared_data / ITK / "BrainProtonDensitySliceBorder20.mhd")
    assert png.array.shape == (1, 257, 221) and png.array.dtype == np.uint8
    np.testing.assert_array_equal(png.array, mhd.array)


def test_drive_gif_mask_and_rgb_tif(shared_data):
    training = shared_data / "drive/training"
    mask = read_image(training / "1st_manual/21_manual1.gif")
    assert mask.array.shape == (1, 584, 565)
    assert set(np.unique(mask.array).tolist()) == {0, 255}
    rgb = read_image(training / "images/21_training.tif")
    assert rgb.array.shape == (3, 584, 565) and rgb.channel_names == ["R", "G", "B"]
    np.testing.assert_array_equal(rgb.array[1], np.asarray(PILImage.open(training / "images/21_training.tif"))[..., 1])


def test_rgba_drops_alpha_and_binary_png_reads_0_255(shared_data):
    rgba = read_image(shared_data / ITK / "FivePointsDilated.png")
    np.testing.assert_array_equal(
        rgba.array, np.moveaxis(np.asarray(PILImage.open(shared_data / ITK / "FivePointsDilated.png"))[..., :3], -1, 0))
    binary = read_image(shared_data / ITK / "BrainProtonDensitySliceBorder20Mask.png")  # PIL mode "1"
    assert set(np.unique(binary.array).tolist()) == {0, 255}  # as ITK reads it


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_two_entry_grey_palette_gives_its_grey_values(shared_data, tmp_path, suffix):
    vessels = np.asarray(PILImage.open(shared_data / "drive/training/1st_manual/23_manual1.gif"))  # 0 / 255
    pil = PILImage.fromarray((vessels > 0).astype(np.uint8), mode="P")  # indices 0 / 1
    pil.putpalette([0, 0, 0, 255, 255, 255])
    pil.save(tmp_path / f"vessels{suffix}")
    np.testing.assert_array_equal(read_image(tmp_path / f"vessels{suffix}").array[0], vessels)


def test_colour_palette_with_few_colours_is_a_label_map(tmp_path):
    indices = np.zeros((6, 7), np.uint8)
    indices[1:3, 2:5], indices[4, :] = 1, 15
    pil = PILImage.fromarray(indices, mode="P")
    pil.putpalette([0, 0, 0, 128, 0, 0] + [0, 128, 0] * 254)  # VOC-like colours
    pil.save(tmp_path / "voc_mask.png")
    np.testing.assert_array_equal(read_image(tmp_path / "voc_mask.png").array[0], indices)


def test_medmnist_sample_refs(shared_data):
    retina = shared_data / "medmnist/retinamnist.npz"
    sample = read_image(f"{retina}::train_images::7")
    stack = np.load(retina)["train_images"]  # (N, 28, 28, 3)
    assert sample.array.shape == (3, 28, 28) and sample.channel_names == ["R", "G", "B"]
    np.testing.assert_array_equal(sample.array, np.moveaxis(stack[7], -1, 0))
    breast = read_image(f"{shared_data / 'medmnist/breastmnist.npz'}::val_images::3")
    assert breast.array.shape == (1, 28, 28)
    adrenal = read_image(f"{shared_data / 'medmnist/adrenalmnist3d.npz'}::train_images::0")
    assert adrenal.array.shape == (1, 28, 28, 28)


def test_npz_archive_is_read_once_for_many_samples(shared_data):
    from medsight.io import arrays

    arrays._archive_array.cache_clear()
    ref = shared_data / "medmnist/breastmnist.npz"
    first = read_image(f"{ref}::train_images::0")
    first.array[:] = 0  # a caller modifying its copy must not change later reads
    for index in range(300):
        read_image(f"{ref}::train_images::{index}")
    assert arrays._archive_array.cache_info().misses == 1
    assert read_image(f"{ref}::train_images::0").array.any()


def test_dicom_files_apply_rescale(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = get_testdata_file(name)
        dataset = pydicom.dcmread(path)
        slope, intercept = float(dataset.get("RescaleSlope", 1)), float(dataset.get("RescaleIntercept", 0))
        expected = dataset.pixel_array * slope + intercept
        image = read_image(path)
        assert image.array.shape == (1, dataset.Rows, dataset.Columns)
        np.testing.assert_array_equal(image.array[0], expected)
        assert image.spacing == pytest.approx([float(v) for v in dataset.PixelSpacing])
    ct = read_image(get_testdata_file("CT_small.dcm"))
    assert ct.array.min() < 0  # intercept -1024 applied: air is negative HU
    no_extension = tmp_path / "IM0001"
    no_extension.write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    np.testing.assert_array_equal(read_image(no_extension).array, ct.array)  # found by its DICM preamble


@pytest.mark.parametrize("name", [
    f"{PYRAD}/brain1_label.nrrd", f"{ITK}/BrainProtonDensitySliceBorder20DirectionPlus30.nhdr",
    f"{ITK}/BayesianClassifierInitializerMemberships.mhd", f"{ITK}/KmeansTest_T1UCharRaw.nii.gz",
    f"{ITK}/BrainProtonDensitySlice.png", f"{ITK}/BrainT1Slice.png", "drive/training/1st_manual/22_manual1.gif",
    "medmnist/retinamnist.npz::val_images::2", "medmnist/adrenalmnist3d.npz::train_images::4",
])
def test_header_matches_full_read(shared_data, name):
    info = read_header(f"{shared_data}/{name}")
    image = read_image(f"{shared_data}/{name}")
    assert info.spatial_shape == image.spatial_shape and info.num_channels == image.num_channels
    assert info.dtype == image.array.dtype
    np.testing.assert_allclose(info.spacing, image.spacing)
    np.testing.assert_allclose(info.origin, image.origin)
    np.testing.assert_allclose(info.direction, image.direction)


def test_dicom_header_matches_full_read():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    info, image = read_header(path), read_image(path)
    assert (info.spatial_shape, info.num_channels, info.dtype) == (image.spatial_shape, 1, image.array.dtype)
    assert info.spacing == pytest.approx(image.spacing)
