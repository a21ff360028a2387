"""Compact ResNets (stem stride, member ensembles), the width ladder rule, test-time flips, 3D augmentation."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from medsight.classification.networks import EnsembleLoss, MemberEnsemble, small_resnet
from medsight.classification.sizing import WIDTH_LADDER, time_training_step, widest_that_fits
from medsight.nets import create_model
from medsight.tasks.batch_augment import mirror_variants, random_affine_batch, rotation_matrix


def test_stride_two_stem_halves_every_axis_of_a_volume():
    net = small_resnet(3, 1, 2, layers=(1, 1, 1, 1), widths=(4, 4, 8, 8), stem_stride=2).eval()
    stem = net.encoder.conv1(torch.zeros(1, 1, 28, 28, 28))
    assert stem.shape[2:] == (14, 14, 14)
    flat = small_resnet(2, 1, 2, layers=(1, 1, 1, 1), widths=(4, 4, 8, 8), stem_stride=1)
    assert flat.encoder.conv1(torch.zeros(1, 1, 28, 28)).shape[2:] == (28, 28)
    with pytest.raises(ValueError):
        small_resnet(2, 1, 2, stem_stride=3)


def test_registry_builds_a_member_ensemble():
    net = create_model("small_resnet", spatial_dims=2, in_channels=1, num_classes=3, widths=[4, 4, 8, 8], members=3)
    assert isinstance(net, MemberEnsemble) and len(net.members) == 3
    # independently initialised: the members' first convolutions differ
    assert not torch.equal(net.members[0].encoder.conv1.weight, net.members[1].encoder.conv1.weight)
    assert net.train()(torch.zeros(2, 1, 28, 28)).shape == (3, 2, 3)


class _Fixed(torch.nn.Module):
    """A 'network' that returns fixed logits for any input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_ensemble_evaluation_output_is_the_log_of_the_mean_probability():
    # member A: logits (0, ln 3) -> p = (1/4, 3/4); member B: logits (0, 0) -> p = (1/2, 1/2); mean (3/8, 5/8)
    net = MemberEnsemble([_Fixed([0.0, math.log(3.0)]), _Fixed([0.0, 0.0])]).eval()
    probs = torch.softmax(net(torch.zeros(2, 1)), 1)
    assert torch.allclose(probs, torch.tensor([[0.375, 0.625]] * 2), atol=1e-6)


def test_ensemble_loss_is_the_mean_of_member_losses():
    target = torch.tensor([1])
    # CE of logits (0, ln 3) at class 1 = -ln(3/4); of (0, 0) = ln 2
    output = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, 0.0]]])
    loss = EnsembleLoss(torch.nn.CrossEntropyLoss())(output, target)
    assert loss.item() == pytest.approx((-math.log(0.75) + math.log(2.0)) / 2, abs=1e-6)
    plain = EnsembleLoss(torch.nn.CrossEntropyLoss())(output[0], target)
    assert plain.item() == pytest.approx(-math.log(0.75), abs=1e-6)


def test_widest_that_fits_picks_by_epochs_hand_computed():
    per_sample = {(1,): 1e-3, (2,): 4e-3, (3,): 16e-3}
    # 100 cases, 10 s: epochs 100, 25, 6.25 -> with 20 epochs needed the second fits, the third does not
    assert widest_that_fits([(1,), (2,), (3,)], per_sample.__getitem__, 100, 10.0, 20) == (1, pytest.approx(25.0))
    assert widest_that_fits([(1,), (2,), (3,)], per_sample.__getitem__, 100, 10.0, 5)[0] == 2
    # nothing reaches 200 epochs: the narrowest, with the epochs it gets
    assert widest_that_fits([(1,), (2,), (3,)], per_sample.__getitem__, 100, 10.0, 200) == (0, pytest.approx(100.0))


def test_widest_that_fits_stops_timing_at_the_first_misfit():
    timed = []

    def per_sample(widths):
        timed.append(widths)
        return {WIDTH_LADDER[0]: 1e-3, WIDTH_LADDER[1]: 1.0}.get(tuple(widths), 100.0)

    assert widest_that_fits(WIDTH_LADDER, per_sample, 10, 10.0, 5)[0] == 0
    assert timed == list(WIDTH_LADDER[:2])


def test_mirror_variants_cover_every_subset_of_axes():
    x = torch.arange(8.0).view(1, 1, 2, 2, 2)
    variants = mirror_variants(x, [0, 2])
    assert len(variants) == 4
    expected = [x, torch.flip(x, [2]), torch.flip(x, [4]), torch.flip(x, [2, 4])]
    assert all(torch.equal(v, e) for v, e in zip(variants, expected))
    assert mirror_variants(x, []) == [x]


def test_rotation_matrices_are_proper_rotations():
    r2 = rotation_matrix(np.array([math.pi / 2]))
    assert np.allclose(r2, [[0, -1], [1, 0]])
    r3 = rotation_matrix(np.array([0.3, -0.2, 0.25]))
    assert np.allclose(r3 @ r3.T, np.eye(3)) and np.linalg.det(r3) == pytest.approx(1.0)


def test_3d_affine_batch_rotates_and_keeps_identity_without_augmentation():
    x = torch.zeros(2, 1, 12, 12, 12)
    x[:, :, 2:10, 5:7, 5:7] = 1.0  # a bar along axis 0
    rngs = [np.random.default_rng(s) for s in (0, 1)]
    assert torch.equal(random_affine_batch(x, rngs, {}), x)
    big = {"rotation": [math.pi / 2, math.pi / 2]}  # 90 degrees about every axis: the bar changes direction
    out = random_affine_batch(x, [np.random.default_rng(s) for s in (0, 1)], big)
    assert out.shape == x.shape
    assert not torch.allclose(out, x, atol=0.1)
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=0.15)  # mass kept (interpolation aside)


class _SlowFirstCalls(torch.nn.Module):
    """A linear layer whose first ``slow`` forward passes sleep 0.3 s (a process still warming up)."""

    def __init__(self, slow: int):
        super().__init__()
        self.linear, self.calls, self.slow = torch.nn.Linear(4, 2), 0, slow

    def forward(self, x):
        self.calls += 1
        if self.calls <= self.slow:
            time.sleep(0.3)
        return self.linear(x)


def test_timed_step_leaves_the_warmup_steps_out():
    x, y = torch.zeros(8, 4), torch.zeros(8, dtype=torch.long)
    # two slow first calls: one warm-up step leaves one slow step among the timed, but the fastest is fast
    model = _SlowFirstCalls(slow=2)
    assert time_training_step(model, x, y, repeats=2, warmup=1) < 0.2 and model.calls == 3
    # three slow calls and one warm-up: both timed steps slow; three warm-ups: neither
    assert time_training_step(_SlowFirstCalls(slow=3), x, y, repeats=2, warmup=1) >= 0.3
    model = _SlowFirstCalls(slow=3)
    assert time_training_step(model, x, y, repeats=2, warmup=3) < 0.2 and model.calls == 5
