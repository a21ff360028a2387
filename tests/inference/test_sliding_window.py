"""Sliding-window inference: window placement, Gaussian weights, MONAI equality, mirroring, memory."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference as monai_sliding_window

from medsight.errors import InputError
from medsight.inference import (
    gaussian_importance_map,
    mirrored_predict,
    sliding_window_inference,
    window_count,
    window_starts,
)

BRATS_CASE = "brats_examples/brats_2013_pat0003_1"
BRATS_CROP = (slice(63, 127), slice(118, 198), slice(68, 116))  # 64 x 80 x 48 around the tumour


@pytest.fixture(autouse=True)
def _one_thread():
    """Numerics tests of many small windows: one thread avoids OpenMP stalls on a shared, busy CPU."""
    torch.set_num_threads(1)


def _conv_net(spatial_dims: int, in_channels: int, num_classes: int, seed: int = 0) -> torch.nn.Module:
    """A tiny random conv net with zero padding (output depends on the window's context)."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(in_channels, 6, 3, padding=1), torch.nn.Tanh(), conv(6, num_classes, 3, padding=1)
    ).eval()


def _monai_logits(image: torch.Tensor, net, roi, overlap: float, batch_size: int = 4) -> np.ndarray:
    """MONAI's Gaussian-blended logits for (C, *spatial) ``image``."""
    with torch.inference_mode():
        out = monai_sliding_window(
            image[None], roi, batch_size, net, overlap=overlap, mode="gaussian", sigma_scale=0.125
        )
    return out[0].numpy()


def _one_hot_predictor(num_classes: int):
    """A predictor whose logits are the one-hot of the (integer) label in channel 0."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        labels = batch[:, 0].round().long()
        return torch.movedim(torch.nn.functional.one_hot(labels, num_classes), -1, 1).float()

    return predict


def _brats_crop(shared_data: Path) -> tuple[torch.Tensor, np.ndarray]:
    """FLAIR + T1c (2, 64, 80, 48) float32 and the OTMultiClass label crop of a real BraTS case."""
    import nibabel as nib

    folder = shared_data / BRATS_CASE
    channels = [
        np.asarray(nib.load(folder / f"{name}_subtrMeanDivStd.nii.gz").dataobj, dtype=np.float32)[BRATS_CROP]
        for name in ("Flair", "T1c")
    ]
    label = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj)[BRATS_CROP].astype(np.uint8)
    return torch.from_numpy(np.stack(channels)), label


# --- window placement and weights (hand-computed) -------------------------------------------------


@pytest.mark.parametrize(
    "size, roi, overlap, expected",
    [
        (300, 96, 0.5, [0, 48, 96, 144, 192, 204]),  # last window flush with the border
        (96, 96, 0.5, [0]),
        (100, 96, 0.5, [0, 4]),
        (10, 4, 0.0, [0, 4, 6]),
        (7, 5, 0.9, [0, 1, 2]),  # int(5 * 0.1) = 0 -> step 1
        (13, 6, 0.25, [0, 4, 7]),  # int(6 * 0.75) = 4
    ],
)
def test_window_starts_are_hand_computed(size, roi, overlap, expected):
    assert window_starts(size, roi, overlap) == expected


def test_window_count_pads_small_axes():
    # 300 -> 6 starts, 40 < 96 is padded to one window, 512 -> 0, 48, ..., 384, 416 = 10 starts
    assert window_count((300, 40, 512), (96, 96, 96), 0.5) == 6 * 1 * 10


def test_gaussian_weights_are_hand_computed():
    # sigma = 0.125 * 5 = 0.625; w(d) = exp(-d^2 / (2 * 0.390625))
    np.testing.assert_allclose(
        gaussian_importance_map((5,)).numpy(), [0.00597602, 0.27803730, 1.0, 0.27803730, 0.00597602], rtol=1e-6
    )
    # even size 4: sigma 0.5, offsets -1.5, -0.5, 0.5, 1.5 -> exp(-4.5), exp(-0.5)
    np.testing.assert_allclose(
        gaussian_importance_map((4,)).numpy(), [0.01110900, 0.60653066, 0.60653066, 0.01110900], rtol=1e-6
    )
    weights = gaussian_importance_map((9, 9))  # sigma 1.125: edge 1D value exp(-16 / 2.53125) = 0.0018
    assert weights[4, 4].item() == 1.0
    assert weights[0, 0].item() == pytest.approx(1e-3)  # 0.0018^2 = 3.2e-6 is raised to the floor
    assert weights[0, 4].item() == pytest.approx(math.exp(-16 / (2 * 1.125**2)), rel=1e-6)
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.T)


# --- equality with MONAI --------------------------------------------------------------------------


@pytest.mark.parametrize("roi, overlap", [((16, 16, 16), 0.5), ((20, 12, 29), 0.25), ((40, 50, 10), 0.5)])
def test_matches_monai_on_random_volume(roi, overlap):
    torch.manual_seed(1)
    image = torch.randn(2, 37, 45, 29)
    net = _conv_net(3, 2, 3)
    reference = _monai_logits(image, net, roi, overlap)
    logits = sliding_window_inference(image, net, roi, 3, overlap=overlap, output="logits")
    probabilities = sliding_window_inference(image, net, roi, 3, overlap=overlap, output="probabilities")
    labels = sliding_window_inference(image, net, roi, 3, overlap=overlap)
    assert logits.shape == reference.shape == (3, 37, 45, 29)
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(reference), 0).numpy(), atol=1e-4)
    assert labels.dtype == np.uint8
    assert np.mean(labels == reference.argmax(0)) > 0.9999


def test_matches_monai_on_real_brats_crop(shared_data):
    image, _ = _brats_crop(shared_data)
    net = _conv_net(3, 2, 5, seed=3)
    reference = _monai_logits(image, net, (32, 32, 32), 0.5)
    logits = sliding_window_inference(image, net, (32, 32, 32), 5, overlap=0.5, output="logits", batch_size=3)
    labels = sliding_window_inference(image, net, (32, 32, 32), 5, overlap=0.5)
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
    assert np.mean(labels == reference.argmax(0)) > 0.9999
    assert len(np.unique(labels)) > 1  # a constant map would hide placement errors


def test_matches_monai_in_2d_on_real_em_slice(shared_data):
    from PIL import Image as PILImage

    pixels = np.asarray(PILImage.open(shared_data / "isbi2012_em/images/0.png"), dtype=np.float32)
    image = torch.from_numpy((pixels[:150, :203] - pixels.mean()) / pixels.std())[None]
    net = _conv_net(2, 1, 2, seed=5)
    reference = _monai_logits(image, net, (64, 48), 0.5)
    logits = sliding_window_inference(image, net, (64, 48), 2, overlap=0.5, output="logits")
    sigmoid = sliding_window_inference(image, net, (64, 48), 2, output="probabilities", activation="sigmoid")
    masks = sliding_window_inference(image, net, (64, 48), 2, activation="sigmoid")
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-reference)), atol=1e-4)
    assert masks.shape == (2, 150, 203) and masks.dtype == np.uint8
    assert np.mean(masks == (reference > 0)) > 0.9999


def test_image_smaller_than_roi_is_padded_and_cropped_back():
    torch.manual_seed(2)
    image = torch.randn(1, 10, 21, 7)
    net = _conv_net(3, 1, 2)
    reference = _monai_logits(image, net, (16, 16, 16), 0.5)  # MONAI pads (diff // 2) before, rest after
    logits = sliding_window_inference(image, net, (16, 16, 16), 2, output="logits")
    assert logits.shape == (2, 10, 21, 7)
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0)
    labels = torch.randint(0, 3, (1, 10, 21, 7)).float()
    identity = sliding_window_inference(labels, _one_hot_predictor(3), (16, 16, 16), 3)
    np.testing.assert_array_equal(identity, labels[0].numpy())


# --- behaviour ------------------------------------------------------------------------------------


def test_one_hot_predictor_reproduces_real_label_exactly(shared_data):
    _, label = _brats_crop(shared_data)
    assert set(np.unique(label)) >= {0, 1, 2, 4}
    image = torch.from_numpy(label[None].astype(np.float32))
    for mirror_axes in (None, (0, 2)):
        labels = sliding_window_inference(
            image, _one_hot_predictor(5), (32, 32, 20), 5, overlap=0.5, mirror_axes=mirror_axes
        )
        np.testing.assert_array_equal(labels, label)


def test_many_classes_give_int16_labels():
    labels = torch.randint(0, 300, (1, 12, 10, 9)).float()
    result = sliding_window_inference(labels, _one_hot_predictor(300), (8, 8, 8), 300)
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, labels[0].numpy())


def test_mirroring_with_flip_equivariant_predictor_equals_no_mirroring():
    torch.manual_seed(4)
    conv = torch.nn.Conv3d(2, 3, 3, padding=1)
    with torch.no_grad():  # a kernel symmetric under every flip makes the net flip-equivariant
        flips = [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
        conv.weight.copy_((conv.weight + sum(conv.weight.flip(dims) for dims in flips)) / 8)
    image = torch.randn(2, 30, 26, 22)
    plain = sliding_window_inference(image, conv, (16, 16, 16), 3, output="logits")
    mirrored = sliding_window_inference(image, conv, (16, 16, 16), 3, output="logits", mirror_axes=(0, 1, 2))
    np.testing.assert_allclose(mirrored, plain, atol=1e-5, rtol=0)


def test_mirroring_averages_all_flip_combinations_like_monai_with_a_tta_predictor():
    torch.manual_seed(6)
    image = torch.randn(2, 30, 26, 22)
    net = _conv_net(3, 2, 3)
    flip_sets = [(), (2,), (3,), (2, 3)]

    def tta_net(batch):
        return sum(net(batch.flip(dims)).flip(dims) if dims else net(batch) for dims in flip_sets) / 4

    reference = _monai_logits(image, tta_net, (16, 16, 16), 0.5)
    mirrored = sliding_window_inference(image, net, (16, 16, 16), 3, output="logits", mirror_axes=(0, 1))
    plain = sliding_window_inference(image, net, (16, 16, 16), 3, output="logits")
    np.testing.assert_allclose(mirrored, reference, atol=1e-4, rtol=0)
    assert np.abs(mirrored - plain).max() > 1e-3  # the random net is not flip-equivariant


def test_deep_supervision_list_batch_axis_numpy_input_and_batch_size_agree():
    torch.manual_seed(7)
    image = torch.randn(2, 25, 19, 23)
    net = _conv_net(3, 2, 3)

    def deep_supervision(batch):
        full = net(batch)
        return [full, full[:, :, ::2, ::2, ::2]]

    base = sliding_window_inference(image, net, (16, 16, 16), 3, output="logits", batch_size=1)
    for result in (
        sliding_window_inference(image, deep_supervision, (16, 16, 16), 3, output="logits"),
        sliding_window_inference(image[None], net, (16, 16, 16), 3, output="logits", batch_size=7),
        sliding_window_inference(image.numpy(), net, 16, 3, output="logits", batch_size=3),
    ):
        np.testing.assert_allclose(result, base, atol=1e-5, rtol=0)


def test_bad_arguments_are_reported():
    image = torch.zeros(1, 20, 20, 20)
    net = _conv_net(3, 1, 2)
    with pytest.raises(InputError, match="does not match a 2D window"):
        sliding_window_inference(torch.zeros(2, 20, 20, 20), net, (16, 16), 2)
    with pytest.raises(InputError, match="non-empty"):
        sliding_window_inference(torch.zeros(1, 0, 20, 20), net, (16, 16, 16), 2)
    with pytest.raises(ValueError, match="expected"):
        sliding_window_inference(image, net, (16, 16, 16), 4)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(image, net, (16, 16, 16), 2, overlap=1.0)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window_inference(image, net, (16, 16, 16), 2, mirror_axes=(3,))
    with pytest.raises(ValueError, match="output"):
        sliding_window_inference(image, net, (16, 16, 16), 2, output="labels")


def test_mirrored_predict_without_axes_is_the_plain_prediction():
    net = _conv_net(2, 1, 2)
    batch = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(mirrored_predict(net, batch, None), net(batch))


# --- memory ---------------------------------------------------------------------------------------


def _peak_extra_bytes(run) -> int:
    """Peak resident memory (bytes) that ``run()`` adds above the current RSS (Linux VmHWM reset)."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark to the current RSS

    def status_kib(field: str) -> int:
        return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    before = status_kib("VmRSS")
    run()
    return (status_kib("VmHWM") - before) * 1024


def test_argmax_path_never_holds_the_full_float_volume():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak-memory reset needs Linux /proc/self/clear_refs")
    num_classes, shape, roi = 4, (512, 96, 96), (32, 48, 48)
    image = torch.rand(1, *shape)
    scale = torch.tensor([1.0, -2.0, 0.5, 3.0]).view(1, num_classes, 1, 1, 1)

    def predictor(batch):  # elementwise: a conv's own workspace would swamp what is measured
        return batch * scale

    def ours(volume):
        return sliding_window_inference(volume, predictor, roi, num_classes, overlap=0.5)

    def monai(volume):
        return _monai_logits(volume, predictor, roi, 0.5).argmax(0)

    ours(image[:, :64]), monai(image[:, :64])  # first calls page in library code: keep it out of the figures
    full_float_volume = num_classes * math.prod(shape) * 4  # 75.5 MB
    try:
        ours_extra = _peak_extra_bytes(lambda: ours(image))
        monai_extra = _peak_extra_bytes(lambda: monai(image))
    except OSError as error:
        pytest.skip(f"cannot reset the peak-memory counter here: {error}")
    assert monai_extra > 0.9 * full_float_volume  # the measurement sees a full-volume allocation
    assert ours_extra < full_float_volume / 2, f"argmax path peaked at {ours_extra / 1e6:.1f} MB extra"
