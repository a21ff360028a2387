"""The cache redoes only what changed: a changed case, or a changed preprocessing entry of the plan."""
from __future__ import annotations

import json
import os
import time

import numpy as np
from helpers import shrink_plan, write_isbi_pairs
from PIL import Image as PILImage

from medsight import api
from medsight.planning.plan import load_plan
from medsight.preprocessing.cache import cache_dir


def test_cache_redoes_only_changed_cases_and_plans(tmp_path, shared_data):
    src = write_isbi_pairs(tmp_path / "em", shared_data, n=4, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    shrink_plan(ds)
    folder = api.preprocess(ds, workers=1, quiet=True)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    assert len(stamps) == 8  # image and label of 4 cases

    # an edit that does not touch preprocessing keeps the cache folder and its files
    plan = load_plan(ds)
    plan["epochs"] = 7
    (ds / "plan.json").write_text(json.dumps(plan))
    assert api.preprocess(ds, workers=1, quiet=True) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")} == stamps

    # a changed image file: only that case is redone (and the data change is noticed)
    time.sleep(0.01)
    img = np.asarray(PILImage.open(src / "images/em_02.png"))
    PILImage.fromarray(255 - img).save(src / "images/em_02.png")
    os.utime(src / "images/em_02.png")
    folder2 = api.preprocess(ds, workers=1, quiet=True)
    after = {p.name: p.stat().st_mtime_ns for p in folder2.glob("*.npy")}
    changed = sorted(n for n in after if after[n] != stamps.get(n))
    assert changed == ["em_02.npy", "em_02_seg.npy"]

    # a changed preprocessing entry gives another cache folder
    plan = load_plan(ds)
    plan["normalization"] = [{"scheme": "none"}] * len(plan["normalization"])
    (ds / "plan.json").write_text(json.dumps(plan))
    folder3 = api.preprocess(ds, workers=1, quiet=True)
    assert folder3 != folder2 and folder3 == cache_dir(ds, plan)
    assert np.load(folder3 / "em_00.npy").max() > 10  # raw intensities, not z-scored
