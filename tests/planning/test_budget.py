"""The plan's step timing: the fastest of the timed steps, after the untimed warm-up."""
from __future__ import annotations

import time

import torch
from torch import nn

from medsight.planning.budget import measure_step_seconds


class _SleepyNet(nn.Module):
    """A network whose forward pass sleeps the next of ``delays`` seconds (warm-up calls first)."""

    def __init__(self, delays: list[float]):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.delays = list(delays)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delays.pop(0))
        return x * self.weight


class _Task:
    def __init__(self, delays: list[float]):
        self.delays = delays

    def build_network(self, plan: dict) -> nn.Module:
        return _SleepyNet(self.delays)

    def build_loss(self, plan: dict):
        return lambda out, y: ((out - y) ** 2).mean()

    def example_batch(self, plan: dict):
        return torch.zeros(2, 3), torch.zeros(2, 3)


def test_the_fastest_timed_step_is_taken_and_warm_up_is_not_timed():
    plan = {"dims": 2, "optimizer": {"name": "adamw", "lr": 1e-3}}
    # two slow warm-up steps, then 0.12, 0.03 and 0.12 s: noise only ever adds time
    seconds = measure_step_seconds(_Task([0.3, 0.3, 0.12, 0.03, 0.12]), plan, torch.device("cpu"), repeats=3)
    assert 0.03 <= seconds < 0.1
