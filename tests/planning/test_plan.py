"""Planning rules, and the time budget becoming a number of epochs."""
from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import PlanError
from medsight.planning.budget import epochs_for_budget
from medsight.planning.plan import REQUIRED_KEYS, target_spacing_rule, validate_plan
from medsight.tasks.segmentation import patch_size_rule


def test_target_spacing_is_median_and_none_when_equal():
    sp = np.array([[1.0, 1.0, 1.0]] * 4)
    assert target_spacing_rule(sp, np.ones((4, 3))) is None
    sp = np.array([[0.8, 0.8, 2.0], [1.0, 1.0, 2.5], [0.9, 0.9, 3.0]])
    assert target_spacing_rule(sp, np.ones((3, 3))) == pytest.approx([0.9, 0.9, 2.5])


def test_anisotropic_axis_takes_tenth_percentile():
    sp = np.array([[0.7, 0.7, 5.0], [0.7, 0.7, 5.0], [0.7, 0.7, 2.5], [0.7, 0.7, 6.0]])
    t = target_spacing_rule(sp, np.ones((4, 3)))
    assert t[:2] == pytest.approx([0.7, 0.7]) and t[2] == pytest.approx(np.percentile(sp[:, 2], 10))


def test_epochs_from_budget():
    assert epochs_for_budget(0.5, 50, 20, overhead_fraction=0.1, data_overhead=1.0) == int(20 * 60 * 0.9 / 25)
    assert epochs_for_budget(100.0, 50, 1) == 1


def test_patch_rule_fits_budget_and_divides():
    patch = patch_size_rule([584, 565], [1.0, 1.0], 256 * 256)
    assert np.prod(patch) <= 256 * 256 * 1.3 and all(p % 16 == 0 for p in patch)
    assert patch_size_rule([40, 40], [1, 1], 256 * 256) == [48, 48]


def test_edited_plan_missing_entries_refused():
    with pytest.raises(PlanError, match="epochs"):
        validate_plan({"task": "segmentation"})


def test_edited_unet_patch_must_fit_its_strides_and_stem():
    base = {"task": "segmentation", "epochs": 1, "steps_per_epoch": 1, "batch_size": 1, "dims": 2,
            "patch_size": [256, 256], "network": {"name": "unet", "strides": [[1, 1], [2, 2], [2, 2]]}}
    base.update({k: base.get(k, {}) for k in REQUIRED_KEYS})
    validate_plan(base)  # 256 is a multiple of 4, and of 4 x 2 with a stem
    validate_plan({**base, "network": {**base["network"], "stem": [2, 2]}})
    with pytest.raises(PlanError, match=r"patch_size \[102, 256\] is not a multiple of \[4, 4\]"):
        validate_plan({**base, "patch_size": [102, 256]})
    with pytest.raises(PlanError, match=r"\[12, 8\] \(the U-Net's strides times its stem\)"):
        validate_plan({**base, "network": {**base["network"], "stem": [3, 2]}})


def test_a_fingerprint_of_an_older_medsight_is_computed_again(tmp_path, shared_data):
    import json

    from helpers import write_isbi_pairs

    from medsight import api

    src = write_isbi_pairs(tmp_path / "em", shared_data, n=2, size=32)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)
    first = api.fingerprint(ds, workers=1, progress=False)
    assert first["spacing_known"] is False and "foreground_layout" in first  # PNG tiles
    old = {k: v for k, v in first.items() if k not in ("version", "spacing_known", "foreground_layout")}
    (ds / "fingerprint.json").write_text(json.dumps(old))  # as session 7's medsight wrote it
    again = api.fingerprint(ds, workers=1, progress=False)
    assert again["spacing_known"] is False and again["foreground_layout"] == first["foreground_layout"]
    assert json.loads((ds / "fingerprint.json").read_text())["version"] == again["version"]


def test_summary_names_the_stem_and_the_prediction_precision_of_an_edited_plan():
    from medsight.planning.plan import summary_table

    plan = {"task": "segmentation", "dims": 2, "patch_size": [256, 256], "normalization": [{"scheme": "zscore"}],
            "batch_size": 4, "loss": {"name": "dice_ce"}, "optimizer": {"name": "adamw", "lr": 3e-3}, "epochs": 2,
            "steps_per_epoch": 5, "network": {"name": "unet", "features": [32, 64], "strides": [[1, 1], [2, 2]]}}
    assert "stem" not in summary_table(plan)
    plan["network"]["stem"] = [2, 2]
    assert "features=[32, 64], stem=[2, 2]" in summary_table(plan)
    plan["mixed_precision"] = "bf16"
    assert "bfloat16 autocast" in summary_table(plan) and "predicts in float32" not in summary_table(plan)
    plan["inference"] = {"mixed_precision": False}
    assert "bfloat16 autocast; predicts in float32" in summary_table(plan)


def test_summary_says_how_predict_slides_and_mirrors():
    from medsight.planning.plan import inference_summary

    assert inference_summary({}) == ""
    seg = {"inference": {"overlap": 0.5, "mirror_axes": [0, 1, 2]}}
    assert inference_summary(seg) == ("sliding windows, overlap 0.5; mirrored on axes [0, 1, 2]: 8 passes "
                                      "(predict --disable-tta: 1)")
    assert inference_summary({"inference": {"overlap": 0.25, "mirror_axes": []}}) == \
        "sliding windows, overlap 0.25; no test-time mirroring"
    classifier = {"test_time_augmentation": {"mirror_axes": [1]}}
    assert inference_summary(classifier) == "mirrored on axes [1]: 2 passes (predict --disable-tta: 1)"
