"""The optimisers medsight trains with: fused Adam/AdamW where the device has the kernel, the same algorithm."""
from __future__ import annotations

import pytest
import torch

from medsight.training.optim import adam, adamw, build_optimizer


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Tanh(), torch.nn.Conv2d(4, 1, 1))


@pytest.mark.parametrize("make, reference", [(adamw, torch.optim.AdamW), (adam, torch.optim.Adam)])
def test_fused_optimiser_follows_the_unfused_one_in_float32(make, reference):
    """Ten steps of the fused kernel and of torch's per-tensor loop from the same start end at the same
    weights (float32 rounding apart); a wrong learning rate, decay or moment would not."""
    nets = [_net(), _net()]
    opts = [make(nets[0].parameters(), lr=1e-2, weight_decay=1e-2),
            reference(nets[1].parameters(), lr=1e-2, weight_decay=1e-2, foreach=False)]
    assert opts[0].defaults["fused"] and not opts[1].defaults.get("fused")
    x = torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    for _ in range(10):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(nets[0][0].weight, _net()[0].weight)  # it did train


def test_groups_generators_and_frozen_parameters_are_taken_as_given():
    net = _net()
    net[0].weight.requires_grad_(False)
    opt = adamw([{"params": (p for p in net[0].parameters()), "lr": 1e-4},
                 {"params": net[2].parameters(), "lr": 1e-3}], lr=1e-3)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2] and opt.defaults["fused"]
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    (net(torch.randn(1, 2, 5, 5)) ** 2).mean().backward()
    before = net[0].weight.clone()
    opt.step()
    assert torch.equal(net[0].weight, before)  # no gradient, no step


def test_a_plan_optimiser_is_fused_and_an_integer_parameter_is_not_fusable():
    plan = {"optimizer": {"name": "adamw", "lr": 1e-3}}
    optimizer, _ = build_optimizer(_net(), plan, total_steps=5)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]
    counter = torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
    assert not adamw([counter, *_net().parameters()], lr=1e-3).defaults.get("fused")


def test_a_device_without_the_fused_kernel_gets_the_loop(monkeypatch):
    """torch before 2.4 has no CPU kernel: its CPU parameters must not ask for one (the step would raise)."""
    from medsight.training import optim

    monkeypatch.setattr(optim, "FUSED_DEVICES", ("cuda",))
    net = _net()
    opt = adamw(net.parameters(), lr=1e-3)
    assert not opt.defaults.get("fused")
    (net(torch.randn(1, 2, 5, 5)) ** 2).mean().backward()
    opt.step()
