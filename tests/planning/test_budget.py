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


def test_epochs_count_data_checkpoint_validation_and_the_final_mirrored_prediction():
    from medsight.planning.budget import schedule_epochs

    parts = {"step": 0.5, "data_per_step": 0.1, "checkpoint": 1.0, "validation_per_case": 3.0,
             "validation_cases": 4, "mirrorings": 4}
    plan = {"steps_per_epoch": 50, "measured_step_seconds": 0.5, "measured_epoch_parts": parts,
            "validation": {"every": 1, "fraction_of_time": 0.1}}
    schedule_epochs(plan, 20.0, margin=0.05)
    # an epoch trains 50 x (0.5 + 0.1) + 1 = 31 s; validating 4 cases takes 12 s, more than 10 % of 31 s
    # until every 4th epoch (12 / 4 = 3 <= 3.1); the final prediction with 4 mirrorings costs 48 s
    assert plan["validation"]["every"] == 4
    assert plan["epochs"] == int((1200 * 0.95 - 48) // (31 + 3))
    schedule_epochs(plan, 40.0, margin=0.05)
    assert plan["epochs"] == int((2400 * 0.95 - 48) // (31 + 3))
    cheap = {**parts, "validation_per_case": 0.1}
    plan["measured_epoch_parts"] = cheap
    schedule_epochs(plan, 20.0, margin=0.05)
    assert plan["validation"]["every"] == 1 and plan["epochs"] == int((1140 - 1.6) // 31.4)
    # a write slower than 5 % of the epoch's 30 s of steps is paced by the loop: it costs 1.5 s an epoch
    plan["measured_epoch_parts"] = {**cheap, "checkpoint": 10.0}
    schedule_epochs(plan, 20.0, margin=0.05)
    assert plan["epochs"] == int((1140 - 1.6) // (30 + 1.5 + 0.4))


def test_a_step_timed_inside_an_epoch_replaces_step_plus_data():
    from medsight.planning.budget import schedule_epochs

    parts = {"step": 0.5, "data_per_step": 0.1, "step_in_epoch": 0.7, "checkpoint": 1.0,
             "validation_per_case": 0.1, "validation_cases": 4, "mirrorings": 0}
    plan = {"steps_per_epoch": 50, "measured_step_seconds": 0.5, "measured_epoch_parts": parts,
            "validation": {"every": 1, "fraction_of_time": 0.1}}
    schedule_epochs(plan, 20.0, margin=0.05)
    # 50 x 0.7 + 1 = 36 s of training an epoch (not 50 x 0.6 + 1 = 31), 0.4 s of validation every epoch
    assert plan["validation"]["every"] == 1 and plan["epochs"] == int(1140 // 36.4) == 31


def test_without_measured_parts_the_flat_allowances_stay():
    from medsight.planning.budget import epochs_for_budget, schedule_epochs

    plan = {"steps_per_epoch": 50, "measured_step_seconds": 0.5, "validation": {"every": 1, "fraction_of_time": 0.1}}
    schedule_epochs(plan, 20.0)
    assert plan["epochs"] == epochs_for_budget(0.5, 50, 20.0, 0.1) and plan["validation"]["every"] == 1


def test_epoch_parts_are_timed_on_a_real_case(tmp_path, shared_data):
    from helpers import shrink_plan, write_isbi_pairs

    from medsight import api
    from medsight.datasets.manifest import Manifest
    from medsight.tasks import get_task

    src = write_isbi_pairs(tmp_path / "em", shared_data, n=3, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=3, progress=False)
    plan = shrink_plan(ds)
    manifest = Manifest.load(ds)
    fingerprint = api.fingerprint(ds, workers=1, progress=False)
    parts = get_task("segmentation").measure_epoch_parts(manifest, plan, torch.device("cpu"), fingerprint)
    assert parts["data_per_step"] > 0 and parts["validation_per_case"] > 0 and parts["checkpoint"] > 0
    # a real batch and the step on it: at least the batch's own building time
    assert parts["step_in_epoch"] > parts["data_per_step"]
    assert parts["mirrorings"] == 2 ** len(plan["inference"]["mirror_axes"])
    assert not list(ds.glob("**/timed.pt"))  # timed in a temporary folder, nothing left in the dataset


def test_another_budget_reuses_the_measured_parts(tmp_path, shared_data):
    import json

    from helpers import write_isbi_pairs

    from medsight import api

    src = write_isbi_pairs(tmp_path / "em", shared_data, n=3, size=32)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=3, progress=False)
    plan = api.plan(ds, budget_minutes=1, quiet=True, measure=False)
    plan["measured_step_seconds"] = 0.5
    plan["measured_epoch_parts"] = {"step": 0.5, "data_per_step": 0.1, "checkpoint": 1.0, "validation_per_case": 3.0,
                                    "validation_cases": 1, "mirrorings": 4}
    (ds / "plan.json").write_text(json.dumps(plan))
    again = api.ensure_plan(ds, budget_minutes=10, quiet=True)
    train_s = plan["steps_per_epoch"] * 0.6 + 1.0
    assert again["validation"]["every"] == 1  # 3 s of validation is within a tenth of a 31 s epoch
    assert again["epochs"] == int((600 * 0.95 - 12) // (train_s + 3.0))
    assert json.loads((ds / "plan.json").read_text())["epochs"] == again["epochs"]
