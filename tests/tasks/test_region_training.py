"""Region-based training (nnU-Net's BraTS regions): multi-hot targets, painting back to labels, the whole flow."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import shrink_plan, write_brats_cases

from medsight import api
from medsight.errors import PlanError
from medsight.losses import downsample_target
from medsight.planning.plan import plan_hash, summary_table, validate_plan
from medsight.preprocessing.cache import CachedCases, cache_dir
from medsight.sampling.regions import labels_to_regions, region_table
from medsight.tasks import get_task
from medsight.tasks.regions import class_order, default_class_order, paint_regions, region_masks

BRATS_REGIONS = {"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}
REGIONS_ARG = "whole_tumour=1,2,3,4;tumour_core=1,3,4;enhancing=4"


def test_multi_hot_targets_of_a_hand_made_label_patch_and_the_loss_takes_them():
    labels = torch.tensor([[[[0, 1, 2], [3, 4, 0]]]], dtype=torch.int16)  # (B=1, 1, 2, 3)
    target = labels_to_regions(labels, region_table(list(BRATS_REGIONS.values()), num_values=5))
    assert target.shape == (1, 3, 2, 3) and target.dtype == torch.float32
    assert target[0, 0].tolist() == [[0, 1, 1], [1, 1, 0]]  # whole tumour: 1, 2, 3, 4
    assert target[0, 1].tolist() == [[0, 1, 0], [1, 1, 0]]  # core: 1, 3, 4
    assert target[0, 2].tolist() == [[0, 0, 0], [0, 1, 0]]  # enhancing: 4
    with pytest.raises(ValueError, match="outside the region table"):
        labels_to_regions(labels + 5, region_table(list(BRATS_REGIONS.values()), num_values=5))
    plan = {"region_training": True, "regions": BRATS_REGIONS, "loss": {"name": "dice_ce", "batch_dice": True}}
    loss = get_task("segmentation").build_loss(plan)
    sure = 20.0 * (2 * target - 1)  # logits agreeing with the target, at full and half resolution
    half = downsample_target(sure, (1, 2))
    good = float(loss([sure, half], target))
    bad = float(loss([-sure, -half], target))
    assert good < 1e-3 < 1.0 < bad


def test_painting_round_trips_the_regions_of_a_real_brats_label(brats_crop):
    label = brats_crop[1][0]
    assert set(np.unique(label)) == {0, 1, 2, 3, 4}
    values = default_class_order(BRATS_REGIONS)
    assert values == [2, 1, 4]  # whole -> oedema, core -> necrosis (smallest of 1, 3), enhancing -> 4
    masks = region_masks(label, BRATS_REGIONS)
    painted = paint_regions(masks, BRATS_REGIONS, values)
    np.testing.assert_array_equal(region_masks(painted, BRATS_REGIONS), masks)
    np.testing.assert_array_equal(painted, np.where(label == 3, 1, label))  # 3 and 1 share every region
    explicit = {"regions": BRATS_REGIONS, "regions_class_order": [2, 3, 4]}
    assert np.array_equal(region_masks(paint_regions(masks, BRATS_REGIONS, class_order(explicit)), BRATS_REGIONS),
                          masks)
    with pytest.raises(PlanError, match="outside the region"):
        class_order({"regions": BRATS_REGIONS, "regions_class_order": [2, 2, 4]})


def _region_plan(tmp_path, shared_data):
    """Three real BraTS crops imported with the BraTS regions, and a tiny plan."""
    src = write_brats_cases(tmp_path / "brats", shared_data)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="cases", n_folds=3, regions=REGIONS_ARG, progress=False)
    return src, ds, shrink_plan(ds, epochs=1)


def test_region_training_end_to_end_on_brats_crops(tmp_path, shared_data):
    src, ds, plan = _region_plan(tmp_path, shared_data)
    assert plan["region_training"] and plan["regions_class_order"] == [2, 1, 4]
    assert plan["network"]["out_channels"] == 3 and "sigmoid per region" in summary_table(plan)
    validate_plan(plan)
    assert plan_hash(plan) == plan_hash({**plan, "regions_class_order": [2, 3, 4]})
    assert plan_hash(plan) != plan_hash({**plan, "region_training": False})
    task = get_task("segmentation")
    assert task.build_network({**plan, "region_training": False}).eval()(
        torch.zeros(1, 2, *plan["patch_size"])).shape[1] == 5  # edited off: softmax over the 5 labels

    run = api.train(ds, fold=0, quiet=True)
    # the batch path: the same draws as label maps, then as multi-hot regions
    data = CachedCases(cache_dir(ds, plan), ["brats_2013_pat0003_1"])
    _, y_regions = next(task.training_batches(data, plan, (0, 0), 1))
    _, y_labels = next(task.training_batches(data, {**plan, "region_training": False}, (0, 0), 1))
    assert y_regions.shape == (2, 3, *plan["patch_size"])
    expected = torch.stack([torch.isin(y_labels[:, 0].long(), torch.tensor(v)) for v in BRATS_REGIONS.values()], 1)
    assert torch.equal(y_regions, expected.float())
    log = [json.loads(line) for line in (run / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert any("val_score" in row for row in log)
    decisions = json.loads((run / "fold_0" / "decisions.json").read_text())
    assert set(decisions["largest_components"]) <= set(BRATS_REGIONS)

    out = api.predict(run, [ds], tmp_path / "out", save_probabilities=True, quiet=True)
    case = sorted(src.iterdir())[0]
    pred = nib.load(out / f"{case.name}.nii.gz")
    ref = nib.load(case / "OTMultiClass.nii.gz")
    assert pred.shape == ref.shape
    np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-4)
    mask = np.asarray(pred.dataobj)
    assert set(np.unique(mask)) <= {0, 1, 2, 4}  # painted values only
    with np.load(out / "probabilities" / f"{case.name}.npz") as z:
        probs, names = z["probabilities"].astype(np.float32), list(z["regions"])
    assert names == list(BRATS_REGIONS) and probs.shape == (3, *ref.shape)
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    if not decisions["largest_components"]:
        # the written regions are the thresholded sigmoids wherever those nest (enhancing in core in whole),
        # away from float16 rounding at the threshold; elsewhere the smaller region wins
        above = probs > 0.5
        nested = (above[1] <= above[0]) & (above[2] <= above[1])
        sure = (np.abs(probs - 0.5) > 1e-2).all(0) & nested
        np.testing.assert_array_equal(region_masks(mask, BRATS_REGIONS)[:, sure], above[:, sure])
        assert sure.mean() > 0.3  # 0.73 measured

    metrics = api.evaluate(out, ds, quiet=True)
    assert metrics["num_cases"] == 3 and set(metrics["summary"]) == set(BRATS_REGIONS)
    assert all(0.0 <= metrics["summary"][r]["dice"]["mean"] <= 1.0 for r in BRATS_REGIONS)

    import onnxruntime as ort

    onnx_path = api.export(run, tmp_path / "m.onnx", quiet=True)
    x = np.zeros((1, 2, *plan["patch_size"]), np.float32)
    assert ort.InferenceSession(str(onnx_path)).run(None, {"image": x})[0].shape == (1, 3, *plan["patch_size"])
