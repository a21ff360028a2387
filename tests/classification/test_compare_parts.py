"""Pieces of `medsight compare` and `medsight pretrain`: planning, statistics, schedules, encoder files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.classification.comparison_stats import paired_tests, recommend, strategy_summary
from medsight.classification.finetune import dihedral_variants, trainable_units
from medsight.compare import MIN_EPOCHS, PRETRAIN_SHARE, TRAINING_OVERHEAD, plan_comparison
from medsight.errors import InputError
from medsight.pretrain import load_encoder, nt_xent_loss, save_encoder


def test_plan_takes_the_largest_side_that_still_trains_enough_epochs():
    cost = {224: 0.1, 192: 0.07, 160: 0.05, 128: 0.03, 96: 0.02}
    timed = []

    def per_image(side):
        timed.append(side)
        return cost[side]

    # 3 trained strategies, selfsup counts 1.5: weight 3.5; 60 min -> 0.9 * 3600 / 3.5 = 925.7 s per strategy
    plan = plan_comparison(352, 5, 60.0, ["frozen", "finetune", "scratch", "selfsup"], per_image)
    per_strategy = 0.9 * 3600 / (2 + 1 + PRETRAIN_SHARE)
    assert plan["seconds_per_strategy"] == pytest.approx(per_strategy, abs=0.1)
    # epochs at 224: 925.7 / (5 * 352 * 0.1 * 1.15) = 4.6; 192: 6.5; 160: 9.1 >= 8 -> 160
    assert TRAINING_OVERHEAD == 1.15
    assert plan["side"] == 160 and plan["epochs"] == int(per_strategy / (5 * 352 * 0.05 * 1.15)) == 9
    assert timed == [224, 192, 160] and plan["epochs"] >= MIN_EPOCHS
    assert plan["pretrain_minutes_per_fold"] == pytest.approx(PRETRAIN_SHARE * per_strategy / 5 / 60, abs=1e-3)
    # an encoder given: nothing to pretrain, so three equal shares
    no_pretrain = plan_comparison(352, 5, 60.0, ["finetune", "scratch", "selfsup"], per_image, pretrain_needed=False)
    assert no_pretrain["seconds_per_strategy"] == pytest.approx(0.9 * 3600 / 3, abs=0.1)
    assert no_pretrain["pretrain_minutes_per_fold"] == 0
    fixed = plan_comparison(352, 5, 60.0, ["finetune"], lambda s: pytest.fail("timed"), side=64, epochs=3)
    assert (fixed["side"], fixed["epochs"]) == (64, 3)


def test_gradual_unfreezing_opens_the_backbone_over_the_first_part_of_training():
    # 18 units, 10 epochs, opened over the first 3 epochs
    assert trainable_units(0, 10, 18, 0.3) == 0
    assert trainable_units(1, 10, 18, 0.3) == 6
    assert trainable_units(2.5, 10, 18, 0.3) == 15
    assert trainable_units(3, 10, 18, 0.3) == 18 and trainable_units(9, 10, 18, 0.3) == 18
    assert trainable_units(0, 10, 18, 0.0) == 18  # from scratch: everything from the start


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    views = dihedral_variants(x, True)
    assert len(views) == 8
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # all distinct for an asymmetric image
    assert len(dihedral_variants(x, False)) == 2


def test_nt_xent_hand_computed():
    # two pairs; views of a pair identical, the pairs orthogonal: each view's partner has cosine 1, the
    # other two views cosine 0 -> loss = -log(e^(1/T) / (e^(1/T) + 2))
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = nt_xent_loss(z1, z1.clone(), temperature=0.5)
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)), abs=1e-5)


def test_encoder_round_trip_and_refusals(tmp_path):
    from medsight.nets.efficientnet import efficientnet_lite0

    backbone = efficientnet_lite0(num_classes=2, pretrained=False).backbone
    path = save_encoder(backbone, tmp_path / "enc.safetensors", {"note": "test"})
    state = load_encoder(path)
    assert torch.equal(state["_conv_stem.weight"], backbone.state_dict()["_conv_stem.weight"])
    assert (tmp_path / "enc.safetensors.json").is_file()
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(InputError, match="not a medsight"):
        load_encoder(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="readable"):
        load_encoder(garbage)
    with pytest.raises(InputError, match="no such encoder"):
        load_encoder(tmp_path / "missing.safetensors")


def test_summary_paired_tests_and_recommendation():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    good = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])  # AUC 1
    fair = np.array([0.1, 0.2, 0.6, 0.4, 0.3, 0.7, 0.8, 0.9])  # one swapped pair: AUC 14/16
    to2 = lambda p: np.stack([1 - p, p], 1)  # noqa: E731
    folds = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    s = strategy_summary(y, to2(fair), folds, n_boot=200)
    assert s["auc"] == pytest.approx(14 / 16) and s["auc_ci95"][0] <= s["auc"] <= s["auc_ci95"][1]
    assert len(s["fold_aucs"]) == 2
    tests = paired_tests(y, {"good": to2(good), "fair": to2(fair)})
    assert len(tests) == 1 and tests[0]["test"] == "DeLong" and tests[0]["difference"] == pytest.approx(2 / 16)
    summaries = {"good": {"auc": 1.0}, "fair": {"auc": 14 / 16}}
    # not significant with 8 cases: the cheaper one is recommended
    advice = recommend(summaries, tests, {"good": 100.0, "fair": 10.0})
    assert tests[0]["p_value"] > 0.05 and advice["strategy"] == "fair" and advice["best_auc_strategy"] == "good"
    assert recommend(summaries, tests, {"good": 10.0, "fair": 100.0})["strategy"] == "good"
    significant = [{**tests[0], "p_value": 0.001}]
    assert recommend(summaries, significant, {"good": 100.0, "fair": 10.0})["strategy"] == "good"


def test_frozen_texture_features_add_deviations_and_the_stride8_stage(shared_data):
    """Two real ISIC images: the texture features hold each channel's mean (equal to the plain features') and
    its standard deviation over the image, from the stride-8 stage on."""
    from PIL import Image as PILImage

    from medsight.classification.finetune import build_model
    from medsight.classification.frozen import extract_features

    files = sorted((shared_data / "isic_uda1").glob("*.jpg"))[:2]
    images = np.stack([np.moveaxis(np.asarray(PILImage.open(f).convert("RGB").resize((64, 64))), -1, 0)
                       for f in files])
    model = build_model("imagenet", 2)
    plain = extract_features(model, images, orientation_free=False)
    texture = extract_features(model, images, orientation_free=False, texture=True)
    widths = (40, 112, 320, 1280)
    assert plain.shape == (2, sum(widths[1:])) and texture.shape == (2, 2 * sum(widths))
    start, means, deviations = 0, [], []
    for w in widths:
        means.append(texture[:, start:start + w])
        deviations.append(texture[:, start + w:start + 2 * w])
        start += 2 * w
    np.testing.assert_allclose(np.concatenate(means[1:], 1), plain, rtol=1e-4, atol=1e-5)
    assert all((d >= 0).all() for d in deviations) and all(d.max() > 0 for d in deviations)
    # 32 px: the last stage and the head are 1 x 1 maps, whose deviation is 0 (not NaN)
    small = extract_features(model, images[:, :, :32, :32], orientation_free=False, texture=True)
    assert np.isfinite(small).all() and (small[:, -1280:] == 0).all()
