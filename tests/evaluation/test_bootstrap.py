"""Bootstrap intervals and paired tests: coverage of known cases, skipped resamples, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest

from medsight.errors import InputError
from medsight.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_distribution,
    paired_bootstrap_test,
    resample_indices,
    take_rows,
)
from medsight.evaluation.classification import delong_test, roc_auc


def test_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(0).normal(10.0, 2.0, 400)
    point, low, high = bootstrap_ci(np.mean, values, n_boot=2000)
    assert point == pytest.approx(values.mean())
    standard_error = values.std() / np.sqrt(values.size)
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.1)
    assert low < point < high


def test_same_seed_same_interval_and_rows_stay_paired():
    y = np.array([0, 1] * 20)
    p = np.linspace(0, 1, 40)
    assert bootstrap_ci(roc_auc, y, p, n_boot=100, seed=3) == bootstrap_ci(roc_auc, y, p, n_boot=100, seed=3)
    # a metric that is 1 only if the pairing (row i of y with row i of x) survives resampling
    paired = bootstrap_distribution(lambda a, b: float(np.all(a == b)), np.arange(30), np.arange(30), n_boot=50)
    assert np.all(paired == 1.0)


def test_undefined_resamples_are_skipped_and_stratification_avoids_them():
    y = np.zeros(20, int)
    y[0] = 1  # one positive: many resamples hold no positive and AUC is undefined there
    p = np.random.default_rng(1).uniform(size=20)
    plain = bootstrap_distribution(roc_auc, y, p, n_boot=300)
    assert 0 < plain.size < 300 and np.all(np.isfinite(plain))
    stratified = bootstrap_distribution(roc_auc, y, p, n_boot=300, stratify=y)
    assert stratified.size == 300
    point, low, high = bootstrap_ci(roc_auc, y, p, n_boot=300)
    assert low <= point <= high


def test_stratified_resamples_keep_group_sizes():
    groups = np.array([0] * 7 + [1] * 3)
    for indices in resample_indices(10, 20, seed=0, stratify=groups):
        assert np.count_nonzero(groups[indices] == 1) == 3


def test_undefined_everywhere_raises_input_error():
    with pytest.raises(InputError, match="undefined"):
        bootstrap_ci(roc_auc, np.ones(10, int), np.linspace(0, 1, 10))
    with pytest.raises(InputError, match="rows"):
        bootstrap_ci(roc_auc, np.ones(10, int), np.linspace(0, 1, 9))


def test_take_rows_handles_per_image_lists():
    per_image = [("a", 1), ("b", 2), ("c", 3)]
    assert take_rows(per_image, np.array([2, 2, 0])) == [("c", 3), ("c", 3), ("a", 1)]


def test_paired_test_identical_models_and_clearly_better_model():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 150)
    good = y + 0.5 * rng.normal(size=300)
    poor = y + 2.0 * rng.normal(size=300)
    assert paired_bootstrap_test(roc_auc, y, good, good, n_boot=200) == 1.0
    assert paired_bootstrap_test(roc_auc, y, good, poor, n_boot=500, stratify=y) < 0.01


def test_paired_test_agrees_with_delong_on_a_moderate_difference():
    rng = np.random.default_rng(11)
    y = np.repeat([0, 1], 150)
    shared = rng.normal(size=300)
    a = 0.9 * y + shared + 0.6 * rng.normal(size=300)
    b = 0.7 * y + shared + 0.6 * rng.normal(size=300)
    p_delong = delong_test(y, a, b)[3]
    p_boot = paired_bootstrap_test(roc_auc, y, a, b, n_boot=1000, stratify=y)
    assert 0.001 < p_delong < 0.5
    assert abs(np.log10(p_boot) - np.log10(p_delong)) < 0.5


def test_auc_bootstrap_is_fast():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = y * 0.5 + rng.uniform(size=500)
    start = time.perf_counter()
    bootstrap_ci(roc_auc, y, p, n_boot=1000)
    assert time.perf_counter() - start < 2.0
