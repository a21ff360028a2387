"""``Task.with_inference_options``: what ``predict --disable-tta`` / ``--overlap`` change in a plan, and that the
checkpoints of the plan still load (the plan hash is the same)."""
from __future__ import annotations

import torch
from torch import nn

from medsight.planning.plan import plan_hash
from medsight.tasks import get_task
from medsight.tasks.detection import class_values

PLAN = {"task": "detection", "dims": 2, "labels": {"1": "cell"}, "network": {"name": "centernet"},
        "inference": {"overlap": 0.5, "mirror_axes": [0, 1], "batch_size": 8}}


def test_options_edit_a_copy_of_inference_and_keep_the_plan_hash():
    task = get_task("segmentation")
    edited = task.with_inference_options(PLAN, test_time_augmentation=False, overlap=0.25)
    assert edited["inference"] == {"overlap": 0.25, "mirror_axes": [], "batch_size": 8}
    assert PLAN["inference"] == {"overlap": 0.5, "mirror_axes": [0, 1], "batch_size": 8}  # not mutated
    assert plan_hash(edited) == plan_hash(PLAN)
    assert task.with_inference_options(PLAN) == PLAN  # the defaults change nothing


class CountingHead(nn.Module):
    """Stands in for a CenterNet head: counts its passes, returns heat, size and offset maps of zeros."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.calls, self.n_classes = 0, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.zeros(x.shape[0], self.n_classes + 2 + 2, *x.shape[2:])


def test_detection_makes_one_pass_per_mirroring_and_one_without():
    task = get_task("detection")
    plan = PLAN
    head, x = CountingHead(len(class_values(plan))), torch.zeros(1, 1, 16, 16)
    heat, _, _ = task._dense_maps([head], x, plan)
    assert head.calls == 4 and heat.shape[1] == len(class_values(plan))
    head.calls = 0
    task._dense_maps([head], x, task.with_inference_options(plan, test_time_augmentation=False))
    assert head.calls == 1
