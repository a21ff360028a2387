"""Clinical covariates (age, sex, ...) beside the images of a classification dataset.

A dataset imported with ``--option covariates=NAME,NAME`` keeps, per case, the value of each named
covariate (``Case.covariates``; None where the source has none) and, in ``Manifest.extra["covariates"]``,
each covariate's kind: ``numeric`` when every value given is a number, ``categorical`` otherwise, or as
declared (``NAME:categorical`` for codes such as sites 1-4, ``NAME:numeric``).

A covariate model is a logistic regression on the encoded covariates, fitted on a training fold only:
numeric values standardised with the training fold's mean and deviation plus a column marking a missing
value (which then counts as the mean), categorical values one-hot over the levels the training fold holds
(a missing or unseen level is all zeros). Its probabilities join an image model's as independent evidence
(:func:`fuse`): ``p(y | image, covariates) ~ p(y | image) p(y | covariates) / p(y)``, which needs no second
model fitted on predictions (a network's predictions on its own training images are over-confident).
On ISIC (age and sex, age missing for half of the images; 5-fold pooled out-of-fold AUC) the covariates
alone gave 0.66, and fused with the images: frozen features 0.749 -> 0.775, fine-tuning 0.720 -> 0.765,
self-supervised 0.743 -> 0.781 (benchmarks/results/isic_compare.json).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from medsight.errors import InputError

NUMERIC, CATEGORICAL = "numeric", "categorical"
#: probabilities are clipped here before their logarithm
_FLOOR = 1e-7
#: texts that mean "no value" (pandas' defaults, compared without case): missing, not a category
MISSING_TEXTS = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan",
                           "<na>", "n/a", "na", "null", "nan", "none"})


def covariate_value(raw: Any) -> float | str | None:
    """One source value as stored: a finite number, a text, or None (missing: empty, null, NaN, ``NA``,
    ``N/A`` and pandas' other missing-value texts).

    Numbers written as text ("60", "1e3") become numbers, so a CSV and a JSON sidecar store alike.
    Raises TypeError for a list or an object, which is not one value."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        return float(raw) if math.isfinite(raw) else None
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in MISSING_TEXTS:
            return None
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else None
    raise TypeError(f"{type(raw).__name__} is not a single value")


def covariate_kinds(names: Sequence[str], rows: Sequence[dict[str, Any]], source: str | None = None,
                    declared: dict[str, str | None] | None = None) -> dict[str, str]:
    """Each covariate's kind from the stored values of every case, or as ``declared``; a covariate with no
    value, or declared numeric with a text value, is refused (``source``, the file or folder the values came
    from, names it in the message)."""
    kinds = {}
    for name in names:
        given = [r.get(name) for r in rows if r.get(name) is not None]
        if not given:
            raise InputError(f"covariate {name!r} has no value in any case", path=source,
                             fix="name a covariate the data holds")
        numeric = all(isinstance(v, float) for v in given)
        kind = (declared or {}).get(name) or (NUMERIC if numeric else CATEGORICAL)
        if kind == NUMERIC and not numeric:
            text = next(v for v in given if not isinstance(v, float))
            raise InputError(f"covariate {name!r} is declared numeric but holds {text!r}", path=source,
                             fix=f"declare it {name}:{CATEGORICAL}, or fix the value")
        kinds[name] = kind
    return kinds


def as_kind(value: float | str | None, kind: str) -> float | str | None:
    """A stored value in its covariate's kind: a categorical covariate keeps numbers as their text."""
    if value is None or kind == NUMERIC:
        return value
    return f"{value:g}" if isinstance(value, float) else value


def parse_names(text: str | Sequence[str] | None, option: str = "covariates") -> dict[str, str | None]:
    """``"age,sex,site:categorical"`` (the importer option) or a list as covariate names, each with the kind it
    is declared (``NAME:numeric`` or ``NAME:categorical``; None: found from the values, so that codes such
    as sites 1-4 can be declared categorical). Duplicates, blanks and unknown kinds are refused."""
    if text is None:
        return {}
    out: dict[str, str | None] = {}
    for item in (text.split(",") if isinstance(text, str) else text):
        name, _, kind = item.strip().partition(":")
        name, kind = name.strip(), kind.strip() or None
        if not name:
            raise InputError(f"--option {option}= holds an empty name ({text!r})", fix="give names separated by commas")
        if kind not in (None, NUMERIC, CATEGORICAL):
            raise InputError(f"--option {option}= declares {name!r} as {kind!r}",
                             fix=f"declare a covariate {NUMERIC} or {CATEGORICAL} (NAME:{CATEGORICAL})")
        if name in out:
            raise InputError(f"--option {option}= names a covariate twice ({text!r})")
        out[name] = kind
    return out


@dataclass
class CovariateEncoder:
    """Covariate values -> a fixed-width numeric matrix, with statistics from the training cases only."""

    kinds: dict[str, str]
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    levels: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, rows: Sequence[dict[str, Any]]) -> "CovariateEncoder":
        """Means and deviations of the numeric covariates, levels of the categorical ones."""
        for name, kind in self.kinds.items():
            values = [as_kind(r.get(name), kind) for r in rows]
            given = [v for v in values if v is not None]
            if kind == NUMERIC:
                self.means[name] = float(np.mean(given)) if given else 0.0
                scale = float(np.std(given)) if given else 0.0
                self.scales[name] = scale if scale > 0 else 1.0
            else:
                self.levels[name] = sorted(set(given))
        return self

    def column_names(self) -> list[str]:
        """What each column of :meth:`transform` holds: ``age``, ``age missing``, ``sex = male``, ..."""
        names = []
        for name, kind in self.kinds.items():
            names += ([name, f"{name} missing"] if kind == NUMERIC
                      else [f"{name} = {level}" for level in self.levels[name]])
        return names

    def transform(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """(cases, columns): per numeric covariate its standard score and a missing flag, per categorical
        one column per training level."""
        columns = []
        for name, kind in self.kinds.items():
            values = [as_kind(r.get(name), kind) for r in rows]
            if kind == NUMERIC:
                missing = np.array([v is None for v in values], dtype=float)
                score = np.array([0.0 if v is None else (v - self.means[name]) / self.scales[name] for v in values])
                columns += [score, missing]
            else:
                columns += [np.array([v == level for v in values], dtype=float) for level in self.levels[name]]
        return np.stack(columns, 1) if columns else np.zeros((len(rows), 0))


class CovariateModel:
    """Class probabilities from the covariates alone: a logistic regression on the encoded values.

    After fitting, the model is its encoder's statistics and the regression's coefficients
    (:meth:`state`, plain JSON: ``train`` keeps it in each fold's ``decisions.json``), and predicts with
    numpy alone (:meth:`from_state` restores it)."""

    def __init__(self, kinds: dict[str, str], n_classes: int, strength: float = 1.0) -> None:
        self.encoder = CovariateEncoder(dict(kinds))
        self.n_classes = n_classes
        self.strength = strength
        self.prior = np.full(n_classes, 1.0 / n_classes)
        self.classes: np.ndarray | None = None  # class indices the regression learnt (None: no regression)
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)

    def fit(self, rows: Sequence[dict[str, Any]], labels: Iterable[int]) -> "CovariateModel":
        """Fit on the training cases' covariates and labels (values 0..n_classes-1)."""
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(list(labels), dtype=int)
        counts = np.bincount(labels, minlength=self.n_classes).astype(float)
        self.prior = counts / counts.sum()
        features = self.encoder.fit(rows).transform(rows)
        self.classes = None
        if (counts > 0).sum() >= 2 and features.shape[1]:
            model = LogisticRegression(C=self.strength, max_iter=2000).fit(features, labels)
            self.classes, self.coef, self.intercept = model.classes_.copy(), model.coef_.copy(), model.intercept_.copy()
        return self

    def predict_proba(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """(cases, n_classes); a class the training cases lacked, or no model at all, gets the prior."""
        out = np.tile(self.prior, (len(rows), 1))
        if self.classes is not None and len(rows):
            logits = self.encoder.transform(rows) @ self.coef.T + self.intercept
            if len(self.classes) == 2:  # scikit-learn's binary model: one logit, for the second class
                p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
                probs = np.stack([1.0 - p1, p1], 1)
            else:
                logits -= logits.max(1, keepdims=True)
                probs = np.exp(logits)
                probs /= probs.sum(1, keepdims=True)
            out[:, self.classes] = probs
        return out

    def state(self) -> dict:
        """The fitted model as plain JSON (kinds, encoder statistics, prior, coefficients)."""
        e = self.encoder
        return {"kinds": e.kinds, "means": e.means, "scales": e.scales, "levels": e.levels,
                "n_classes": self.n_classes, "prior": self.prior.tolist(),
                "classes": None if self.classes is None else self.classes.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> "CovariateModel":
        """The model :meth:`state` saved."""
        model = cls(state["kinds"], int(state["n_classes"]))
        model.encoder = CovariateEncoder(dict(state["kinds"]), dict(state["means"]), dict(state["scales"]),
                                         {k: list(v) for k, v in state["levels"].items()})
        model.prior = np.asarray(state["prior"], dtype=float)
        if state.get("classes") is not None:
            model.classes = np.asarray(state["classes"], dtype=int)
            model.coef = np.asarray(state["coef"], dtype=float)
            model.intercept = np.asarray(state["intercept"], dtype=float)
        return model


def odds_ratios(state: dict) -> dict[str, float] | None:
    """A binary covariate model's odds ratio for the second class per encoded column (per standard deviation
    for a numeric covariate, against the reference of no level for a categorical one); None when the model
    is not a binary regression."""
    model = CovariateModel.from_state(state)
    if model.classes is None or len(model.classes) != 2:
        return None
    return dict(zip(model.encoder.column_names(), np.exp(model.coef[0]).tolist()))


def ensemble_fuse(image_probs: np.ndarray, rows: Sequence[dict[str, Any]], states: Sequence[dict]) -> np.ndarray:
    """An ensemble's image probabilities fused with its folds' covariate models (their probabilities and
    priors averaged, as the folds' image probabilities are)."""
    models = [CovariateModel.from_state(s) for s in states]
    covariate_probs = np.mean([m.predict_proba(rows) for m in models], 0)
    return fuse(image_probs, covariate_probs, np.mean([m.prior for m in models], 0))


def fuse(image_probs: np.ndarray, covariate_probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Image and covariate probabilities as independent evidence: proportional to their product over the
    prior, renormalised per case. A class with prior 0 keeps the image's say alone."""
    image_probs = np.asarray(image_probs, dtype=float)
    prior = np.asarray(prior, dtype=float)
    known = prior > 0
    log = np.log(np.clip(image_probs, _FLOOR, 1.0))
    log[:, known] += np.log(np.clip(covariate_probs[:, known], _FLOOR, 1.0)) - np.log(prior[known])
    log -= log.max(1, keepdims=True)
    fused = np.exp(log)
    return fused / fused.sum(1, keepdims=True)


def stored_rows(names: dict[str, str | None] | Sequence[str], raw_rows: Sequence[dict[str, Any]],
                places: Sequence[str], source: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The importer's side: each case's raw values (a name absent from a case's dict is missing) as stored
    values of their covariate's kind, and the kinds. ``names`` may map each name to its declared kind
    (:func:`parse_names`). ``places`` name each row's source for the message (a file, or a CSV line);
    ``source`` the whole (a folder, a CSV)."""
    declared = dict(names) if isinstance(names, dict) else dict.fromkeys(names)
    rows = []
    for raw, place in zip(raw_rows, places):
        row = {}
        for name in declared:
            try:
                row[name] = covariate_value(raw.get(name))
            except TypeError as e:
                raise InputError(f"covariate {name!r} holds no single value ({e})", path=place) from None
        rows.append(row)
    kinds = covariate_kinds(list(declared), rows, source, declared)
    stored = [{n: as_kind(r[n], kinds[n]) for n in declared} for r in rows]
    for name, kind in kinds.items():
        if kind == CATEGORICAL and declared.get(name) is None:
            _warn_if_numeric_in_disguise(name, [r[name] for r in stored if r[name] is not None], source)
    return stored, kinds


#: a categorical covariate of more levels than this is likely a number written with text (or an identifier)
MANY_LEVELS = 20


def _warn_if_numeric_in_disguise(name: str, values: list[str], source: str) -> None:
    """Warn when a covariate found categorical looks like numbers written with units or a decimal comma
    (``60y``, ``1,5``), or has so many levels that one-hot encoding would learn little from each."""
    import logging
    import re

    levels = sorted(set(values))
    numeric_start = sum(bool(re.match(r"\s*[-+]?\d", v)) for v in values)
    if values and (numeric_start >= 0.8 * len(values) or len(levels) > MANY_LEVELS):
        logging.getLogger("medsight.datasets").warning(
            f"{source}: covariate {name!r} is categorical with {len(levels)} levels (e.g. {', '.join(map(repr, levels[:3]))}): "
            f"if it is a number, write it as one (no units, a decimal point) or declare {name}:{NUMERIC} to find the "
            f"values that are not; if it is a code, declare {name}:{CATEGORICAL}")


def covariate_summary(kinds: dict[str, str], rows: Sequence[dict[str, Any]]) -> str:
    """One line per covariate for the import's report: its kind, its levels or range, how many values miss."""
    lines = []
    for name, kind in kinds.items():
        given = [r.get(name) for r in rows if r.get(name) is not None]
        if kind == NUMERIC:
            what = f"numeric, {min(given):g} to {max(given):g}" if given else "numeric"
        else:
            levels = sorted(set(given))
            what = f"categorical, {len(levels)} levels: " + ", ".join(levels[:6]) + (" ..." if len(levels) > 6 else "")
        lines.append(f"  {name} ({what}; missing in {len(rows) - len(given)} of {len(rows)})")
    return "\n".join(lines)


def read_covariate_csv(path: str | Path, kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Case name -> covariate values from a CSV with a ``case`` column (the names ``predict`` gives its
    inputs) and one column per covariate of ``kinds`` (other columns are ignored). Values are read as the
    importers read them; a missing column, a repeated case, a value that is not one of a numeric covariate
    or an unreadable file is refused naming the file (and the line)."""
    from medsight.datasets.importers.folder_csv import read_numbered_csv_rows

    path = Path(path)
    if not path.is_file():
        raise InputError("no such covariates file", path=path, fix="give a CSV with a case column and "
                         + ", ".join(kinds))
    header, numbered = read_numbered_csv_rows(path)
    columns = [c.strip() for c in header]
    numbered = [(line, {k.strip(): v for k, v in raw.items() if k is not None}) for line, raw in numbered]
    missing = [c for c in ("case", *kinds) if c not in columns]
    if missing:
        raise InputError(f"lacks the column(s) {', '.join(missing)} (it has {', '.join(columns) or 'none'})",
                         path=path, fix="give a case column and one column per covariate the model was trained with")
    if not numbered:
        raise InputError("holds no rows under its header", path=path, fix="give one row per case")
    rows: dict[str, dict[str, Any]] = {}
    for line, raw in numbered:
        case = (raw.get("case") or "").strip()
        if not case:
            raise InputError(f"line {line} has no case name", path=path)
        if case in rows:
            raise InputError(f"line {line} repeats case {case!r}", path=path)
        row = {}
        for name, kind in kinds.items():
            value = covariate_value(raw.get(name))
            if kind == NUMERIC and isinstance(value, str):
                raise InputError(f"line {line}: covariate {name!r} is numeric but holds {value!r}", path=path,
                                 fix="give a number, or leave it empty when it is not known")
            row[name] = as_kind(value, kind)
        rows[case] = row
    return rows
