"""Shades-of-Gray colour constancy on real ISIC dermoscopy images, and its place in `compare`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.classification.images import load_image_set, shades_of_gray
from medsight.compare import _settings_key
from medsight.errors import InputError


@pytest.fixture()
def isic_four(shared_data: Path, tmp_path: Path) -> Path:
    src = tmp_path / "isic"
    src.mkdir()
    for meta in sorted((shared_data / "isic_uda1").glob("ISIC_*.json"))[:4]:
        for f in (meta, meta.with_suffix(".jpg")):
            (src / f.name).symlink_to(f)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="folder-json", progress=False)
    return ds


def _channel_norms(images: np.ndarray, p: float = 6.0) -> np.ndarray:
    x = images.astype(np.float64) / 255.0
    return np.power(np.mean(np.power(x, p), axis=(2, 3)), 1.0 / p)  # (N, 3)


def test_shades_of_gray_equalises_the_channel_norms_of_real_photos(isic_four: Path):
    from medsight.datasets.manifest import Manifest

    plain = load_image_set(Manifest.load(isic_four), 64, workers=1)
    balanced = load_image_set(Manifest.load(isic_four), 64, workers=1, color_constancy="shades_of_gray")
    assert balanced.images.dtype == np.uint8 and balanced.images.shape == plain.images.shape
    before, after = _channel_norms(plain.images), _channel_norms(balanced.images)
    spread = lambda norms: (norms.max(1) - norms.min(1)) / norms.mean(1)  # noqa: E731
    assert spread(before).max() > 0.2  # dermoscopy photos have colour casts
    assert np.all(spread(after) < 0.03) and np.all(spread(after) < spread(before))  # and lose them
    assert np.allclose(after.mean(1), before.mean(1), rtol=0.05)  # the overall brightness is kept
    assert np.array_equal(shades_of_gray(plain.images[0]), balanced.images[0])  # one image as a batch of one


def test_grey_images_are_unchanged():
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (4, 1, 9, 9)).astype(np.uint8), 3, axis=1)
    assert np.array_equal(shades_of_gray(grey), grey)


def test_unknown_method_is_refused(isic_four: Path):
    from medsight.datasets.manifest import Manifest

    with pytest.raises(InputError, match="colour constancy"):
        load_image_set(Manifest.load(isic_four), 32, color_constancy="grey_world")


def test_finished_parts_are_kept_apart_by_colour_constancy():
    plan = {"side": 128, "epochs": 8, "pretrain_minutes_per_fold": 1.0}
    keys = {_settings_key(plan, 1.0, None, 0, cc) for cc in (None, "shades_of_gray")}
    assert len(keys) == 2
    assert json.dumps(sorted(keys))  # folder names, plain strings
