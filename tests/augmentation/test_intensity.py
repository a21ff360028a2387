"""Intensity transforms with hand-computed values, and their statistics on a real crop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from medsight.augmentation import intensity


def test_gamma_on_hand_values():
    x = torch.tensor([[0.0, 1.0, 4.0]])
    # ((x - 0) / 4) ** 0.5 * 4 = [0, 2, 4]
    assert torch.allclose(intensity.gamma_(x.clone(), 0, 0.5, retain_stats=False), torch.tensor([[0.0, 2.0, 4.0]]))
    # inverted: y = (4 - x) / 4 = [1, .75, 0]; y ** .5 = [1, .866, 0]; 4 - 4 * that = [0, 0.536, 4]
    inverted = intensity.gamma_(x.clone(), 0, 0.5, invert=True, retain_stats=False)
    assert torch.allclose(inverted, torch.tensor([[0.0, 4 - 4 * math.sqrt(0.75), 4.0]]), atol=1e-6)


def test_gamma_keeps_mean_and_std_of_a_real_channel(brats_crop):
    x = torch.from_numpy(brats_crop[0][:, 20:84, 20:84, 16:80].copy())
    std0, mean0 = torch.std_mean(x[1])
    for invert in (False, True):
        out = intensity.gamma_(x.clone(), 1, 1.4, invert=invert, retain_stats=True)
        std1, mean1 = torch.std_mean(out[1])
        assert abs(float(mean1 - mean0)) < 1e-3 and abs(float(std1 / std0) - 1) < 1e-3
        assert torch.equal(out[0], x[0])  # the other channel is untouched
        assert not torch.allclose(out[1], x[1], atol=1e-2)
    same = intensity.gamma_(x.clone(), 1, 1.0, retain_stats=True)
    assert torch.allclose(same, x, atol=1e-4)


def test_contrast_on_hand_values():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    # mean 1.5, factor 2: [-1.5, 0.5, 2.5, 4.5], clipped to the former range [0, 3]
    assert intensity.adjust_contrast_(x.clone(), 0, 2.0).tolist() == [[0.0, 0.5, 2.5, 3.0]]
    assert intensity.adjust_contrast_(x.clone(), 0, 2.0, preserve_range=False).tolist() == [[-1.5, 0.5, 2.5, 4.5]]


def test_brightness_multiplies_one_channel():
    x = torch.ones(2, 3, 3)
    out = intensity.scale_brightness_(x, 1, 1.25)
    assert torch.all(out[0] == 1.0) and torch.all(out[1] == 1.25)


def test_blur_matches_scipy_mirror_filter_and_keeps_constants():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(1, 20, 18, 16)).astype(np.float32)
    sigmas = (0.5, 0.8, 1.0)
    out = intensity.gaussian_blur_(torch.from_numpy(volume.copy()), 0, sigmas)
    expected = volume[0].astype(np.float64)
    for axis, sigma in enumerate(sigmas):
        expected = gaussian_filter1d(expected, sigma, axis=axis, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)
    flat = torch.full((1, 8, 8), 3.5)
    assert torch.allclose(intensity.gaussian_blur_(flat, 0, (1.0, 1.0)), torch.full((1, 8, 8), 3.5))


def test_noise_has_the_asked_standard_deviation_and_follows_the_seed():
    x = torch.zeros(2, 64, 64, 16)
    a = intensity.add_gaussian_noise_(x.clone(), 0.1, torch.Generator().manual_seed(3))
    b = intensity.add_gaussian_noise_(x.clone(), 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.1) < 0.002 and abs(float(a.mean())) < 0.002
    assert not torch.equal(a[0], a[1])  # each channel has its own noise


def test_low_resolution_keeps_constants_and_loses_detail(brats_crop):
    flat = torch.full((1, 16, 16, 16), 2.0)
    assert torch.allclose(intensity.simulate_low_resolution_(flat, 0, 0.5), torch.full((1, 16, 16, 16), 2.0))
    x = torch.from_numpy(brats_crop[0][:, 20:84, 20:84, 16:80].copy())
    assert torch.equal(intensity.simulate_low_resolution_(x.clone(), 0, 1.0), x)
    coarse = intensity.simulate_low_resolution_(x.clone(), 0, 0.5)
    detail = lambda v: float(v.diff(dim=0).abs().mean())
    assert detail(coarse[0]) < 0.8 * detail(x[0])
    assert torch.equal(coarse[1], x[1])


@pytest.mark.parametrize("shape", [(7,), (40, 50, 30)])
def test_fast_std_mean_matches_torch(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3 + 100
    std, mean = intensity.std_mean(x)
    ref_std, ref_mean = torch.std_mean(x.double())
    assert abs(mean - float(ref_mean)) < 1e-4 and abs(std - float(ref_std)) < 1e-4
