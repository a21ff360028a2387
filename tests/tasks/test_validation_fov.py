"""Validation during training scores inside the evaluation mask (DRIVE's field of view), as ``evaluate`` does."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.planning.plan import load_plan
from medsight.preprocessing.cache import CachedCases, cache_dir
from medsight.tasks import get_task

from helpers import link_files, shrink_plan


def _drive_subset(shared_data, root, n=3):
    drive = shared_data / "drive" / "training"
    for sub in ("images", "1st_manual", "mask"):
        link_files(sorted((drive / sub).iterdir())[:n], root / "training" / sub)
    return root / "training"


def test_cached_field_of_view_and_validation_inside_it(shared_data, tmp_path, monkeypatch):
    src = _drive_subset(shared_data, tmp_path / "drive")
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", n_folds=3, progress=False)
    shrink_plan(ds, epochs=1)
    plan = load_plan(ds)
    api.preprocess(ds, quiet=True)
    manifest = Manifest.load(ds)
    data = CachedCases(cache_dir(ds, plan), [c.id for c in manifest.cases])
    for case in manifest.cases:
        fov = data.eval_mask(case.id)
        assert fov is not None and fov.dtype == bool
        assert fov.shape[1:] == tuple(data.props(case.id)["network_shape"])
        original = np.asarray(PILImage.open(case.eval_mask)) > 0
        assert abs(fov.mean() - original.mean()) < 0.01  # the same share of the image, resampled
    # a prediction that is right inside the field of view and all vessel outside it scores 1 there
    task = get_task("segmentation")

    first = data.ids[0]
    fov0 = data.eval_mask(first)[0]

    def right_inside(model, array, plan, device, mirror):
        ref = np.asarray(data.label(first))[0].copy()
        ref[~fov0] = 1
        return ref

    monkeypatch.setattr(task, "_label_map", right_inside)
    one = CachedCases(data.folder, data.ids[:1])
    assert task.validate(torch.nn.Identity(), one, plan, torch.device("cpu"))["dice"] == 1.0
    # without the mask (no eval file) the same prediction is penalised for the outside
    (data.folder / f"{first}_eval.npy").unlink()
    assert task.validate(torch.nn.Identity(), one, plan, torch.device("cpu"))["dice"] < 0.9
