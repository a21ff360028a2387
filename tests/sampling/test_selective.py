"""Selective sampling: misclassified items are drawn more often, easy ones still appear."""
from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import InputError
from medsight.sampling import SelectiveSampler


def test_wrong_items_are_drawn_more_and_easy_ones_still_appear():
    sampler = SelectiveSampler(100, uniform_share=0.1)
    wrong = np.zeros(100, bool)
    wrong[[3, 17, 42, 64, 99]] = True
    sampler.update(np.arange(100), wrong)
    draws = sampler.draw(20000, np.random.default_rng(0), replace=True)
    counts = np.bincount(draws, minlength=100)
    # hand-computed: wrong items 0.9 / 5 + 0.1 / 100 = 0.181 each, easy ones 0.001 each
    assert abs(counts[wrong].sum() / 20000 - 0.905) < 0.01
    assert counts[wrong].mean() > 100 * counts[~wrong].mean()  # 0.181 / 0.001 = 181 expected
    assert (counts[~wrong] > 0).sum() > 10  # the floor keeps easy items in play


def test_probabilities_follow_losses_with_the_uniform_floor():
    sampler = SelectiveSampler(2, uniform_share=0.2)
    sampler.update([0, 1], [1.0, 3.0])
    np.testing.assert_allclose(sampler.probabilities(), [0.8 * 0.25 + 0.1, 0.8 * 0.75 + 0.1])
    sampler.update([0], [-2.0])  # negative losses count as zero
    np.testing.assert_allclose(sampler.probabilities(), [0.1, 0.9])


def test_unseen_items_keep_their_initial_weight_and_momentum_blends():
    sampler = SelectiveSampler(3, uniform_share=0.0, initial_weight=1.0, momentum=0.5)
    sampler.update([1], [3.0])  # 0.5 * 1 + 0.5 * 3 = 2
    np.testing.assert_allclose(sampler.weights, [1.0, 2.0, 1.0])
    np.testing.assert_allclose(sampler.probabilities(), [0.25, 0.5, 0.25])


def test_draw_without_replacement_gives_distinct_items_and_is_seeded():
    sampler = SelectiveSampler(10)
    sampler.update(range(10), np.linspace(0, 1, 10))
    a = sampler.draw(10, np.random.default_rng(5))
    b = sampler.draw(10, np.random.default_rng(5))
    assert sorted(a.tolist()) == list(range(10)) and np.array_equal(a, b)


def test_state_round_trip_and_bad_input():
    sampler = SelectiveSampler(4, uniform_share=0.3)
    sampler.update([2], [5.0])
    restored = SelectiveSampler(4)
    restored.load_state_dict(sampler.state_dict())
    np.testing.assert_allclose(restored.probabilities(), sampler.probabilities())
    with pytest.raises(InputError):
        sampler.update([4], [1.0])
    with pytest.raises(InputError):
        sampler.update([0, 1], [1.0])
    with pytest.raises(InputError):
        sampler.update([0], [float("nan")])
    with pytest.raises(InputError):
        SelectiveSampler(0)
    with pytest.raises(InputError):
        SelectiveSampler(3).load_state_dict(sampler.state_dict())
