"""The weight average (model EMA): its arithmetic, the plan's check of its decay, and the loop that keeps it."""
from __future__ import annotations

import json

import pytest
import torch

from medsight import api
from medsight.errors import PlanError
from medsight.planning.plan import load_plan
from medsight.training import loop
from medsight.training.checkpoint import load_checkpoint
from medsight.training.ema import ema_decay, weight_average


def test_average_of_hand_values_with_warm_up():
    net = torch.nn.Linear(1, 1, bias=False)
    average = weight_average(net, decay=0.5)
    expected = None
    for n, w in enumerate([4.0, 0.0, 2.0, 10.0]):
        net.weight.data.fill_(w)
        average.update_parameters(net)
        if n == 0:
            expected = w  # the first update copies
        else:
            keep = min(0.5, (1 + n) / (10 + n))  # 2/11, 3/12, 4/13: the warm-up, all under 0.5
            expected = keep * expected + (1 - keep) * w
        assert float(average.module.weight.detach()) == pytest.approx(expected, abs=1e-6)
    # by hand: 4; 2/11*4 = 0.72727; 3/12*0.72727 + 9/12*2 = 1.68182; 4/13*1.68182 + 9/13*10 = 7.44056
    assert float(average.module.weight.detach()) == pytest.approx(7.44056, abs=1e-5)


def test_average_of_batch_norm_statistics_and_copied_counter():
    net = torch.nn.BatchNorm1d(2)
    average = weight_average(net, decay=0.9)
    net.running_mean.fill_(1.0)
    net.num_batches_tracked.fill_(5)
    average.update_parameters(net)  # copies
    net.running_mean.fill_(3.0)
    net.num_batches_tracked.fill_(7)
    average.update_parameters(net)  # n = 1: keep 2/11
    assert average.module.running_mean.tolist() == pytest.approx([1 + 9 / 11 * 2] * 2)
    assert int(average.module.num_batches_tracked) == 7


@pytest.mark.parametrize("value", [1.0, 1.5, -0.1, "often"])
def test_plan_with_a_bad_decay_is_refused_naming_the_file(tiny_breast, value):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["optimizer"]["ema"] = value
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(PlanError, match="optimizer.ema") as err:
        load_plan(tiny_breast)
    assert "plan.json" in str(err.value)


def test_no_decay_means_no_average():
    assert ema_decay({"optimizer": {}}) is None
    assert ema_decay({"optimizer": {"ema": None}}) is None
    assert ema_decay({"optimizer": {"ema": 0.99}}) == 0.99


def _with_average(dataset, epochs: int) -> None:
    plan = json.loads((dataset / "plan.json").read_text())
    plan["optimizer"]["ema"] = 0.9
    plan["epochs"] = epochs
    (dataset / "plan.json").write_text(json.dumps(plan))


def test_final_checkpoint_holds_the_average_and_resume_continues_it(tiny_breast, tmp_path, monkeypatch):
    _with_average(tiny_breast, epochs=3)
    full = api.train(tiny_breast, out=tmp_path / "full", quiet=True, threads=1, device="cpu") / "fold_0"
    latest = load_checkpoint(full / loop.LATEST)
    final = load_checkpoint(full / loop.FINAL)["model"]
    raw = latest["model"]
    averaged = {k[len("module."):]: v for k, v in latest["ema"].items() if k.startswith("module.")}
    assert set(averaged) == set(final)
    differs = False
    for k in final:
        torch.testing.assert_close(final[k], averaged[k], rtol=0, atol=0)
        differs |= bool(final[k].is_floating_point() and not torch.equal(final[k], raw[k]))
    assert differs, "the kept weights must be the average, not the last step's"

    # cut the run after epoch 1's latest checkpoint, then resume: the same average at the end
    real_save = loop.save_checkpoint

    def save_then_stop(path, state, p_hash):
        real_save(path, state, p_hash)
        if path.name == loop.LATEST and state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    monkeypatch.setattr(loop, "CHECKPOINT_SHARE", float("inf"))  # a latest checkpoint after every epoch
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        api.train(tiny_breast, out=cut, quiet=True, threads=1, device="cpu")
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert not (cut / "fold_0" / loop.FINAL).exists()
    api.train(tiny_breast, out=cut, resume=True, quiet=True, threads=1, device="cpu")
    resumed = load_checkpoint(cut / "fold_0" / loop.FINAL)["model"]
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], rtol=0, atol=0, msg=f"average differs at {k}")
