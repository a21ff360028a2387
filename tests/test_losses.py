"""Losses against values computed by hand from their formulas on 2x2 images."""
from __future__ import annotations

import math

import pytest
import torch

from medsight.errors import InputError
from medsight.losses import (
    CenterNetFocalLoss,
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    FocalLoss,
    SensitivitySpecificityLoss,
    SoftDiceLoss,
    TverskyLoss,
    build_loss,
    list_losses,
)

LN3 = math.log(3.0)
# Two classes; channel 1 minus channel 0 is +-ln 3, so p(class 1) is 3/4 or 1/4:
#   p1 = [[3/4, 1/4], [1/4, 3/4]]   labels = [[1, 0], [1, 1]]
LOGITS = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[LN3, -LN3], [-LN3, LN3]]]])  # (1, 2, 2, 2)
LABELS = torch.tensor([[[1, 0], [1, 1]]])  # (1, 2, 2)
# p(true class) per voxel: 3/4, 3/4, 1/4, 3/4
CE_BY_HAND = (3 * math.log(4 / 3) + math.log(4)) / 4


def test_soft_dice_foreground_by_hand():
    # class 1: TP = 3/4 + 1/4 + 3/4 = 7/4, sum p = 2, sum y = 3 -> Dice = 3.5 / 5 = 0.7
    loss = SoftDiceLoss(batch_dice=False)(LOGITS, LABELS)
    assert float(loss) == pytest.approx(0.3, abs=1e-5)


def test_soft_dice_with_background_by_hand():
    # class 0: p0 = [[1/4, 3/4], [3/4, 1/4]], y0 = [[0, 1], [0, 0]]: TP = 3/4, sums 2 and 1 -> Dice 0.5
    loss = SoftDiceLoss(batch_dice=False, include_background=True)(LOGITS, LABELS)
    assert float(loss) == pytest.approx(1 - (0.7 + 0.5) / 2, abs=1e-5)


def test_batch_dice_pools_over_the_batch():
    # second sample: all background, p1 = 1/4 everywhere (TP 0, sum p 1, sum y 0)
    second = torch.stack([torch.zeros(2, 2), torch.full((2, 2), -LN3)])[None]
    logits = torch.cat([LOGITS, second])
    labels = torch.cat([LABELS, torch.zeros(1, 2, 2, dtype=torch.long)])
    per_sample = SoftDiceLoss(batch_dice=False)(logits, labels)
    pooled = SoftDiceLoss(batch_dice=True)(logits, labels)
    assert float(per_sample) == pytest.approx(1 - (0.7 + 0.0) / 2, abs=1e-4)  # empty class: Dice ~ 0
    assert float(pooled) == pytest.approx(1 - 3.5 / 6, abs=1e-5)  # TP 7/4, sum p 3, sum y 3


def test_label_map_with_channel_axis_and_one_hot_are_the_same():
    dice = SoftDiceLoss()
    one_hot = torch.nn.functional.one_hot(LABELS, 2).permute(0, 3, 1, 2).float()
    assert float(dice(LOGITS, LABELS[:, None])) == pytest.approx(0.3, abs=1e-5)
    assert float(dice(LOGITS, one_hot)) == pytest.approx(0.3, abs=1e-5)
    assert float(CrossEntropyLoss()(LOGITS, one_hot)) == pytest.approx(CE_BY_HAND, abs=1e-6)


def test_cross_entropy_by_hand():
    assert float(CrossEntropyLoss()(LOGITS, LABELS)) == pytest.approx(CE_BY_HAND, abs=1e-6)


def test_cross_entropy_for_classification_with_label_smoothing():
    logits = torch.tensor([[0.0, LN3]])  # p = (1/4, 3/4)
    # smoothing 0.2 over 2 classes: target (0.1, 0.9)
    expected = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    loss = build_loss("ce", label_smoothing=0.2)(logits, torch.tensor([1]))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_dice_ce_is_the_weighted_sum():
    loss = DiceCELoss(weight_dice=2.0, weight_ce=0.5)(LOGITS, LABELS)
    assert float(loss) == pytest.approx(2.0 * 0.3 + 0.5 * CE_BY_HAND, abs=1e-5)


def test_focal_softmax_by_hand():
    # -(1 - p_t)^2 ln p_t: three voxels with p_t = 3/4, one with 1/4
    expected = (3 * (1 / 16) * math.log(4 / 3) + (9 / 16) * math.log(4)) / 4
    assert float(FocalLoss(gamma=2)(LOGITS, LABELS)) == pytest.approx(expected, abs=1e-6)


def test_focal_softmax_alpha_weights_classes():
    # alpha 0.25: background voxels weigh 0.75, foreground 0.25 (one background voxel, p_t = 3/4)
    expected = (0.25 * 2 * (1 / 16) * math.log(4 / 3) + 0.75 * (1 / 16) * math.log(4 / 3)
                + 0.25 * (9 / 16) * math.log(4)) / 4
    assert float(FocalLoss(gamma=2, alpha=0.25)(LOGITS, LABELS)) == pytest.approx(expected, abs=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    assert float(FocalLoss(gamma=0)(LOGITS, LABELS)) == pytest.approx(CE_BY_HAND, abs=1e-6)


def test_tversky_by_hand():
    # class 1: TP 7/4, FP = 2 - 7/4 = 1/4, FN = 3 - 7/4 = 5/4
    expected = 1 - 1.75 / (1.75 + 0.3 * 0.25 + 0.7 * 1.25)
    assert float(TverskyLoss(alpha=0.3, beta=0.7)(LOGITS, LABELS)) == pytest.approx(expected, abs=1e-5)


def test_sensitivity_specificity_by_hand():
    # (y - p)^2 for class 1: 1/16, 1/16 (the negative voxel), 9/16, 1/16; 3 positives, 1 negative
    expected = 0.05 * (11 / 16) / 3 + 0.95 * (1 / 16) / 1
    loss = SensitivitySpecificityLoss(r=0.05, eps=0.0)(LOGITS, LABELS)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


# sigmoid (region) mode: one channel with p = [[3/4, 1/4], [1/4, 3/4]], multi-hot target = labels
SIG_LOGITS = LOGITS[:, 1:]
SIG_TARGET = LABELS[:, None].float()


def test_sigmoid_dice_and_bce_by_hand():
    assert float(SoftDiceLoss(sigmoid=True)(SIG_LOGITS, SIG_TARGET)) == pytest.approx(0.3, abs=1e-5)
    assert float(CrossEntropyLoss(sigmoid=True)(SIG_LOGITS, SIG_TARGET)) == pytest.approx(CE_BY_HAND, abs=1e-6)


def test_sigmoid_focal_by_hand():
    # alpha 0.25 on positives, 0.75 on negatives; negatives cost p^2 ln(1/(1-p))
    expected = (0.25 * (1 / 16) * math.log(4 / 3) * 2 + 0.25 * (9 / 16) * math.log(4)
                + 0.75 * (1 / 16) * math.log(4 / 3)) / 4
    loss = FocalLoss(gamma=2, alpha=0.25, sigmoid=True)(SIG_LOGITS, SIG_TARGET)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_sigmoid_mode_keeps_every_region():
    # two regions: the second is the complement, so both Dice terms count (no background dropped)
    logits = torch.cat([SIG_LOGITS, -SIG_LOGITS], 1)
    target = torch.cat([SIG_TARGET, 1 - SIG_TARGET], 1)
    # region 2: p = [[1/4, 3/4], [3/4, 1/4]], y = [[0, 1], [0, 0]] -> Dice 1.5 / 3
    assert float(SoftDiceLoss(sigmoid=True)(logits, target)) == pytest.approx(1 - (0.7 + 0.5) / 2, abs=1e-5)


def test_centernet_focal_by_hand():
    logits = torch.tensor([LN3, -LN3, -LN3]).view(1, 1, 1, 3)  # p = 3/4, 1/4, 1/4
    heatmap = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    positive = (1 / 16) * math.log(4 / 3)  # (1 - p)^2 ln(1/p)
    near = (0.5**4) * (1 / 16) * math.log(4 / 3)  # (1 - y)^4 p^2 ln(1/(1-p))
    far = (1 / 16) * math.log(4 / 3)
    assert float(CenterNetFocalLoss()(logits, heatmap)) == pytest.approx(positive + near + far, abs=1e-6)


def test_deep_supervision_weights_and_target_sizes():
    seen: list[tuple] = []

    def fake_loss(output, target):
        seen.append((tuple(target.shape), target.dtype))
        return torch.tensor(float(len(seen)))  # 1, 2, 3

    outputs = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    total = DeepSupervisionLoss(fake_loss)(outputs, target)
    assert float(total) == pytest.approx((4 * 1 + 2 * 2 + 1 * 3) / 7)  # weights 1, 1/2, 1/4 normalised
    assert seen == [((1, 1, 8, 8), torch.long), ((1, 1, 4, 4), torch.long), ((1, 1, 2, 2), torch.long)]


def test_deep_supervision_downsamples_labels_by_nearest():
    target = torch.tensor([[[1, 0, 1, 1], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]])  # (1, 4, 4)
    expected_coarse = torch.tensor([[[1, 1], [0, 1]]])  # rows/columns 0 and 2
    full, coarse = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    ce = CrossEntropyLoss()
    expected = (2 / 3) * ce(full, target) + (1 / 3) * ce(coarse, expected_coarse)
    assert float(DeepSupervisionLoss(ce)([full, coarse], target)) == pytest.approx(float(expected), abs=1e-6)
    assert float(DeepSupervisionLoss(ce)(full, target)) == pytest.approx(float(ce(full, target)))


@pytest.mark.parametrize("name", ["dice", "ce", "dice_ce", "focal", "tversky", "ss", "dice_focal"])
def test_gradients_are_finite_and_nonzero(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 4))
    loss = build_loss(name)(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_centernet_gradient_finite_for_extreme_logits():
    logits = torch.tensor([[[[60.0, -60.0, 0.0]]]], requires_grad=True)
    heatmap = torch.tensor([[[[1.0, 0.2, 0.0]]]])
    loss = build_loss("centernet_focal")(logits, heatmap)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_perfect_prediction_gives_zero_dice_loss():
    labels = torch.randint(0, 3, (2, 6, 6))
    logits = 30.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert float(SoftDiceLoss()(logits, labels)) == pytest.approx(0.0, abs=1e-5)
    assert float(DiceCELoss()(logits, labels)) == pytest.approx(0.0, abs=1e-5)
    wrong = SoftDiceLoss()(logits, (labels + 1) % 3)
    assert float(wrong) > 0.99


def test_bad_targets_and_names_are_refused():
    with pytest.raises(ValueError, match="outside 0..1"):
        SoftDiceLoss()(LOGITS, LABELS + 1)
    with pytest.raises(ValueError, match="does not fit"):
        SoftDiceLoss()(LOGITS, torch.zeros(1, 3, 2, 2))
    with pytest.raises(InputError, match="unknown loss 'dicee'"):
        build_loss("dicee")
    assert {"dice", "ce", "dice_ce", "focal", "tversky", "ss", "dice_focal"} <= set(list_losses())
