"""Bootstrap confidence intervals and paired tests by resampling cases (or images) with replacement.

Every array passed is resampled along its first axis with the same indices, so rows stay paired.
Per-image Python lists (detection: one ``(boxes, scores)`` per image) are resampled the same way,
so ``bootstrap_ci(lambda d, g: coco_map(d, g)["map"], detections, ground_truth)`` bootstraps over
images; :func:`detection_bootstrap_ci` does the same from matches made once (20-80x faster on
29k detections in 292 images). A resample on which the metric is undefined (it raises
``ValueError`` or :class:`~medsight.errors.InputError`, or returns None, NaN or inf; e.g. AUC of a
resample holding one class) is skipped; percentile intervals use the remaining resamples.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from medsight.errors import InputError
from medsight.evaluation.detection import (
    FROC_RATES,
    ImageMatch,
    ap_from_matches,
    froc_from_matches,
    map_from_matches,
    pool_matches,
)


def bootstrap_ci(
    metric_fn: Callable[..., float | None],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratify: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(point estimate, low, high): metric on all rows and its percentile (1 - alpha) interval."""
    n_rows = _common_length(arrays)
    point = _evaluate(metric_fn, arrays)
    if point is None:
        raise InputError("the metric is undefined on the full data (e.g. AUC with one class present)")
    values = bootstrap_distribution(metric_fn, *arrays, n_boot=n_boot, seed=seed, stratify=stratify, n_rows=n_rows)
    if values.size == 0:
        raise InputError(f"the metric is undefined on all {n_boot} bootstrap resamples", fix="pass stratify=y_true")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(low), float(high)


def paired_bootstrap_test(
    metric_fn: Callable[..., float | None],
    y: Any,
    a: Any,
    b: Any,
    n_boot: int = 1000,
    seed: int = 0,
    stratify: np.ndarray | None = None,
) -> float:
    """Two-sided p-value that metric_fn(y, a) and metric_fn(y, b) differ, resampling cases jointly.

    The bootstrap differences are centred on the observed one to model the null hypothesis:
    p = (1 + #{|d* - d| >= |d|}) / (1 + valid resamples).
    """
    n_rows = _common_length((y, a, b))
    observed_a, observed_b = _evaluate(metric_fn, (y, a)), _evaluate(metric_fn, (y, b))
    if observed_a is None or observed_b is None:
        raise InputError("the metric is undefined on the full data (e.g. AUC with one class present)")
    observed = observed_a - observed_b
    differences = []
    for indices in resample_indices(n_rows, n_boot, seed, stratify):
        y_boot = take_rows(y, indices)
        value_a = _evaluate(metric_fn, (y_boot, take_rows(a, indices)))
        value_b = _evaluate(metric_fn, (y_boot, take_rows(b, indices)))
        if value_a is not None and value_b is not None:
            differences.append(value_a - value_b)
    if not differences:
        raise InputError(f"the metric is undefined on all {n_boot} bootstrap resamples", fix="pass stratify=y")
    centred = np.abs(np.asarray(differences) - observed)
    extreme = np.count_nonzero(centred >= abs(observed) - 1e-12)
    return float(min(1.0, (1 + extreme) / (1 + len(differences))))


def detection_bootstrap_ci(
    matches: Sequence[ImageMatch],
    statistic: str = "ap",
    method: str | None = None,
    fp_rates: Sequence[float] = FROC_RATES,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(point, low, high) of a detection statistic, resampling images of :func:`match_images` output.

    ``statistic``: ``"ap"`` (first threshold column, all-point unless ``method``), ``"map"`` (mean
    over threshold columns, 101-point unless ``method``) or ``"cpm"`` (FROC). Images are matched
    once; a resample only changes how often each image counts, which gives the same values as
    repeating the images.
    """
    pooled = pool_matches(matches)
    n_images = pooled.n_gt_per_image.size
    if statistic == "ap":
        def compute(weights):
            return ap_from_matches(pooled, method or "all_point", image_weights=weights)["ap"]
    elif statistic == "map":
        def compute(weights):
            return map_from_matches(pooled, method or "101_point", image_weights=weights)["map"]
    elif statistic == "cpm":
        def compute(weights):
            return froc_from_matches(pooled, fp_rates, image_weights=weights)["cpm"]
    else:
        raise InputError(f"unknown detection statistic {statistic!r}", fix='use "ap", "map" or "cpm"')
    return bootstrap_ci(
        lambda indices: compute(np.bincount(indices, minlength=n_images)),
        np.arange(n_images),
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
    )


def bootstrap_distribution(
    metric_fn: Callable[..., float | None],
    *arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    stratify: np.ndarray | None = None,
    n_rows: int | None = None,
) -> np.ndarray:
    """The metric on each resample where it is defined (at most n_boot values)."""
    n_rows = _common_length(arrays) if n_rows is None else n_rows
    values = []
    for indices in resample_indices(n_rows, n_boot, seed, stratify):
        value = _evaluate(metric_fn, tuple(take_rows(array, indices) for array in arrays))
        if value is not None:
            values.append(value)
    return np.asarray(values, dtype=float)


def resample_indices(
    n_rows: int, n_boot: int, seed: int = 0, stratify: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield n_boot arrays of n_rows row indices drawn with replacement (within each stratum if given)."""
    rng = np.random.default_rng(seed)
    if stratify is None:
        for _ in range(n_boot):
            yield rng.integers(0, n_rows, size=n_rows)
        return
    groups = np.asarray(stratify).ravel()
    if groups.size != n_rows:
        raise InputError(f"stratify has {groups.size} entries but the data has {n_rows} rows")
    strata = [np.flatnonzero(groups == group) for group in np.unique(groups)]
    for _ in range(n_boot):
        yield np.concatenate([members[rng.integers(0, members.size, size=members.size)] for members in strata])


def take_rows(data: Any, indices: np.ndarray) -> Any:
    """Rows ``indices`` of an array (first axis) or of a per-image list or tuple."""
    if isinstance(data, np.ndarray):
        return data[indices]
    if isinstance(data, (list, tuple)):
        return [data[i] for i in indices]
    return np.asarray(data)[indices]


def _evaluate(metric_fn: Callable[..., float | None], arrays: Sequence[Any]) -> float | None:
    """metric_fn(*arrays) as a float, or None when it is undefined on these rows."""
    try:
        value = metric_fn(*arrays)
    except (ValueError, InputError, ZeroDivisionError):
        return None
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _common_length(arrays: Sequence[Any]) -> int:
    """The shared number of rows of all arrays/lists."""
    if not arrays:
        raise InputError("bootstrap needs at least one array of cases")
    lengths = {len(array) for array in arrays}
    if len(lengths) != 1:
        raise InputError(f"arrays to resample have different numbers of rows: {sorted(lengths)}")
    n_rows = lengths.pop()
    if n_rows == 0:
        raise InputError("no cases to resample")
    return n_rows
