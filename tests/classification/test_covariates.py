"""Clinical covariates: stored values, the encoder, the covariate model and the fusion, checked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.classification.covariates import (CATEGORICAL, NUMERIC, CovariateEncoder, CovariateModel, covariate_kinds,
                                                covariate_value, ensemble_fuse, fuse, odds_ratios, parse_names,
                                                read_covariate_csv, stored_rows)
from medsight.errors import InputError


def test_values_are_stored_as_numbers_texts_or_missing():
    assert covariate_value(60) == 60.0 and covariate_value(" 60 ") == 60.0 and covariate_value("1e2") == 100.0
    assert covariate_value(True) == 1.0
    assert covariate_value("male") == "male"
    for missing in (None, "", "  ", "nan", "NaN", "NA", "n/a", "NULL", float("nan"), math.inf):
        assert covariate_value(missing) is None
    with pytest.raises(TypeError):
        covariate_value({"a": 1})
    with pytest.raises(TypeError):
        covariate_value([1, 2])


def test_kinds_and_stored_rows():
    rows, kinds = stored_rows(["age", "site", "grade"],
                              [{"age": "60", "site": "back", "grade": 1}, {"age": None, "site": 3, "grade": "2"},
                               {"site": "arm", "grade": 3}], ["a.json", "b.json", "c.json"], "folder")
    assert kinds == {"age": NUMERIC, "site": CATEGORICAL, "grade": NUMERIC}
    assert [r["age"] for r in rows] == [60.0, None, None]
    assert [r["site"] for r in rows] == ["back", "3", "arm"]  # a number among texts is kept as its text
    with pytest.raises(InputError, match="b.json: covariate 'age' holds no single value"):
        stored_rows(["age"], [{"age": 1}, {"age": {"x": 1}}], ["a.json", "b.json"], "folder")
    with pytest.raises(InputError, match="folder: covariate 'age' has no value in any case"):
        covariate_kinds(["age"], [{"age": None}, {}], "folder")
    assert parse_names("a, b") == {"a": None, "b": None} and parse_names(None) == {}
    assert parse_names("age,site:categorical") == {"age": None, "site": CATEGORICAL}
    with pytest.raises(InputError, match="declares 'site' as 'ordinal'"):
        parse_names("site:ordinal")
    with pytest.raises(InputError, match="twice"):
        parse_names("a,a")
    with pytest.raises(InputError, match="empty name"):
        parse_names("a,,b")


def test_declared_kinds():
    raw = [{"site": "1", "age": "60"}, {"site": 3, "age": "unknown"}]
    rows, kinds = stored_rows({"site": CATEGORICAL, "age": None}, raw, ["a", "b"], "labels.csv")
    assert kinds == {"site": CATEGORICAL, "age": CATEGORICAL}  # codes kept apart; a text among numbers
    assert [r["site"] for r in rows] == ["1", "3"]
    with pytest.raises(InputError, match="labels.csv: covariate 'age' is declared numeric but holds 'unknown'"):
        stored_rows({"age": NUMERIC}, raw, ["a", "b"], "labels.csv")


def test_encoder_uses_the_training_cases_statistics():
    enc = CovariateEncoder({"age": NUMERIC, "sex": CATEGORICAL}).fit(
        [{"age": 40.0, "sex": "f"}, {"age": 60.0, "sex": "m"}, {"age": None, "sex": None}])
    assert enc.means["age"] == 50.0 and enc.scales["age"] == 10.0 and enc.levels["sex"] == ["f", "m"]
    x = enc.transform([{"age": 70.0, "sex": "m"}, {"age": None, "sex": "x"}, {}])
    # columns: age score, age missing, sex=f, sex=m; a missing age counts as the mean, an unseen level as none
    assert np.array_equal(x, [[2.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    constant = CovariateEncoder({"age": NUMERIC}).fit([{"age": 5.0}, {"age": 5.0}])
    assert constant.scales["age"] == 1.0  # no division by a zero deviation


def test_fuse_by_hand():
    prior = np.array([0.75, 0.25])
    # covariates that say what the prior says leave the image's probabilities as they were
    image = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert np.allclose(fuse(image, np.tile(prior, (2, 1)), prior), image)
    # p ~ image x covariates / prior: [0.5 * 0.9 / 0.75, 0.5 * 0.1 / 0.25] = [0.6, 0.2] -> [0.75, 0.25]
    assert np.allclose(fuse(np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]]), prior), [[0.75, 0.25]])
    # a class the training cases lacked (prior 0) keeps the image's say
    out = fuse(np.array([[0.2, 0.3, 0.5]]), np.array([[0.5, 0.5, 0.0]]), np.array([0.5, 0.5, 0.0]))
    assert np.allclose(out, [[0.2, 0.3, 0.5]])


def test_covariate_model_learns_and_falls_back_to_the_prior():
    rows = [{"age": float(a)} for a in (20, 25, 30, 35, 60, 65, 70, 75)]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    model = CovariateModel({"age": NUMERIC}, 2).fit(rows, labels)
    probs = model.predict_proba([{"age": 22.0}, {"age": 73.0}, {"age": None}])
    assert probs[0, 1] < 0.3 and probs[1, 1] > 0.7 and abs(probs[2, 1] - 0.5) < 0.05
    assert np.allclose(probs.sum(1), 1)
    one_class = CovariateModel({"age": NUMERIC}, 3).fit(rows[:4], [2, 2, 2, 2])
    assert np.allclose(one_class.predict_proba(rows[:2]), [[0, 0, 1], [0, 0, 1]])
    partial = CovariateModel({"age": NUMERIC}, 3).fit(rows, [0, 0, 0, 0, 2, 2, 2, 2])  # class 1 never seen
    p = partial.predict_proba([{"age": 70.0}])
    assert p[0, 1] == 0 and p[0, 2] > 0.7 and np.isclose(p.sum(), 1)


def test_saved_model_predicts_as_scikit_learn_does():
    """The state kept in decisions.json predicts, with numpy alone, what scikit-learn's model predicts:
    binary (one logit) and multi-class (softmax), with a categorical covariate and missing values."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    rows = [{"age": float(a) if a % 7 else None, "sex": ["female", "male", None][a % 3]}
            for a in rng.integers(20, 80, 60)]
    kinds = {"age": NUMERIC, "sex": CATEGORICAL}
    for n_classes in (2, 3):
        labels = [int((r["age"] or 50) > 50) + (n_classes == 3 and r["sex"] == "male") for r in rows]
        model = CovariateModel(kinds, n_classes).fit(rows, labels)
        restored = CovariateModel.from_state(json_roundtrip(model.state()))
        reference = LogisticRegression(C=1.0, max_iter=2000).fit(model.encoder.transform(rows), labels)
        expected = reference.predict_proba(model.encoder.transform(rows))
        assert np.allclose(restored.predict_proba(rows), expected, atol=1e-6)
        assert np.allclose(restored.prior, np.bincount(labels, minlength=n_classes) / len(labels))


def json_roundtrip(state: dict) -> dict:
    import json

    return json.loads(json.dumps(state))


def test_ensemble_fuse_averages_the_folds_models():
    rows = [{"age": float(a)} for a in (20, 25, 30, 35, 60, 65, 70, 75)]
    a = CovariateModel({"age": NUMERIC}, 2).fit(rows, [0, 0, 0, 0, 1, 1, 1, 1])
    b = CovariateModel({"age": NUMERIC}, 2).fit(rows, [0, 0, 0, 1, 1, 1, 1, 1])
    image = np.array([[0.6, 0.4], [0.3, 0.7]])
    query = [{"age": 28.0}, {"age": None}]
    expected = fuse(image, (a.predict_proba(query) + b.predict_proba(query)) / 2, (a.prior + b.prior) / 2)
    assert np.allclose(ensemble_fuse(image, query, [a.state(), b.state()]), expected)
    assert np.allclose(ensemble_fuse(image, query, [a.state()]), fuse(image, a.predict_proba(query), a.prior))


def test_covariate_csv_is_read_by_kind_and_refused_naming_the_line(tmp_path):
    kinds = {"age": NUMERIC, "site": CATEGORICAL}
    good = tmp_path / "cov.csv"
    good.write_text("case,age,site,note\nscan_1,60,3,x\nscan_2,NA,,\n")
    assert read_covariate_csv(good, kinds) == {"scan_1": {"age": 60.0, "site": "3"},
                                               "scan_2": {"age": None, "site": None}}
    for text, words in [("case,age\nscan_1,60\n", "lacks the column(s) site"),
                        ("case,age,site\nscan_1,sixty,3\n", "line 2: covariate 'age' is numeric but holds 'sixty'"),
                        ("case,age,site\nscan_1,60,3\nscan_1,61,3\n", "line 3 repeats case 'scan_1'"),
                        ("case,age,site\n,60,3\n", "line 2 has no case name"),
                        ("case,age,site\n", "holds no rows under its header")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match="bad.csv") as e:
            read_covariate_csv(bad, kinds)
        assert words in str(e.value)
    with pytest.raises(InputError, match="no such covariates file"):
        read_covariate_csv(tmp_path / "absent.csv", kinds)


def test_odds_ratios_name_each_encoded_column():
    rows = [{"age": float(a), "sex": s} for a, s in zip((20, 25, 30, 35, 60, 65, 70, 75), "fmfmfmfm")]
    model = CovariateModel({"age": NUMERIC, "sex": CATEGORICAL}, 2).fit(rows, [0, 0, 0, 0, 1, 1, 1, 1])
    ratios = odds_ratios(model.state())
    assert list(ratios) == ["age", "age missing", "sex = f", "sex = m"] == model.encoder.column_names()
    assert ratios["age"] > 2 and np.isclose(ratios["age"], math.exp(model.coef[0][0]))
    assert odds_ratios(CovariateModel({"age": NUMERIC}, 3).fit(rows, [0, 1, 2, 0, 1, 2, 0, 1]).state()) is None
