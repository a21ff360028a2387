"""Ordinal soft labels: targets and loss against values computed by hand; the plan picks them for grades."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medsight import api
from medsight.classification.ordinal import OrdinalSoftLabelLoss, ordinal_soft_targets
from medsight.errors import InputError
from medsight.tasks import get_task


def test_soft_targets_by_hand():
    soft = ordinal_soft_targets(torch.tensor([1, 0]), 3, sigma=1.0)
    side, far = math.exp(-0.5), math.exp(-2.0)
    assert torch.allclose(soft[0], torch.tensor([side, 1.0, side]) / (1 + 2 * side), atol=1e-6)
    assert torch.allclose(soft[1], torch.tensor([1.0, side, far]) / (1 + side + far), atol=1e-6)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_soft_targets_peak_on_the_grade_and_sum_to_one(sigma: float):
    labels = torch.arange(5)
    soft = ordinal_soft_targets(labels, 5, sigma)
    assert torch.allclose(soft.sum(1), torch.ones(5))
    assert torch.equal(soft.argmax(1), labels)
    # closer grades get more than farther ones, on both sides
    assert soft[2, 1] > soft[2, 0] and soft[2, 3] > soft[2, 4] and torch.isclose(soft[2, 1], soft[2, 3])


def test_loss_by_hand_and_its_limit():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    log_p = torch.log_softmax(logits, 1)[0]
    q = ordinal_soft_targets(torch.tensor([0]), 3, 1.0)[0]
    expected = -float((q * log_p).sum())
    assert float(OrdinalSoftLabelLoss(1.0)(logits, torch.tensor([0]))) == pytest.approx(expected, rel=1e-6)
    # a narrow spread is plain cross-entropy
    ce = float(torch.nn.functional.cross_entropy(logits, torch.tensor([0])))
    assert float(OrdinalSoftLabelLoss(0.05)(logits, torch.tensor([0]))) == pytest.approx(ce, rel=1e-6)
    # predicting a distant grade costs more than a neighbouring one
    near = OrdinalSoftLabelLoss(1.0)(torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([0]))
    far = OrdinalSoftLabelLoss(1.0)(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([0]))
    assert float(near) < float(far)


def test_non_positive_sigma_is_refused():
    with pytest.raises(InputError, match="sigma"):
        OrdinalSoftLabelLoss(0.0)


def test_plan_keeps_cross_entropy_for_grades_and_builds_soft_labels_when_asked(shared_data: Path, tmp_path: Path):
    ds = tmp_path / "ds"
    api.import_dataset(shared_data / "medmnist" / "retinamnist.npz", ds, progress=False)
    plan = api.plan(ds, budget_minutes=0.01, quiet=True, measure=False)
    task = get_task("classification")
    assert plan["ordinal"] and plan["loss"] == {"name": "ce", "label_smoothing": 0.1}
    assert isinstance(task.build_loss(plan).loss, torch.nn.CrossEntropyLoss)
    plan["loss"] = {"name": "ordinal_soft_labels", "sigma": 0.5}
    loss = task.build_loss(plan)
    assert isinstance(loss.loss, OrdinalSoftLabelLoss) and loss.loss.sigma == 0.5
    plan["loss"] = {"name": "hinge"}
    with pytest.raises(InputError, match="unknown classification loss"):
        task.build_loss(plan)
