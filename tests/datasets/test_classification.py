"""``folder-json`` (ISIC sidecars) and ``folder-csv`` importers, and the classification splits."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from medsight.datasets import detect_format, import_dataset
from medsight.errors import InputError


@pytest.fixture(scope="module")
def isic(shared_data: Path) -> Path:
    return shared_data / "isic_uda1"


def _isic_rows(isic: Path) -> list[tuple[str, str]]:
    """(image file name, benign/malignant) of every ISIC image, from its sidecar."""
    return [(p.name, json.loads(p.with_suffix(".json").read_text())["meta"]["clinical"]["benign_malignant"])
            for p in sorted(isic.glob("*.jpg"))]


def test_isic_folder_json(isic: Path, tmp_path: Path):
    assert detect_format(isic) == "folder-json"
    m = import_dataset(isic, tmp_path / "ds", progress=False)
    assert (m.task, m.dims, m.channels) == ("classification", 2, ["R", "G", "B"])
    assert m.labels == {"0": "benign", "1": "malignant"}
    assert len(m.cases) == 440 and Counter(c.label for c in m.cases) == {0: 318, 1: 122}
    assert m.case_by_id["ISIC_0000285"].label == 1  # its sidecar says malignant
    assert m.extra["label_key"] == "meta.clinical.benign_malignant"
    # 5 stratified folds: every fold's validation part holds 122/440 = 27.7% malignant (+-1 case)
    assert len(m.splits) == 5
    for split in m.splits:
        val = [m.case_by_id[i].label for i in split["val"]]
        assert len(val) == 88 and abs(sum(val) - 122 / 5) <= 1
        assert not set(split["val"]) & set(split["train"])


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_with_patient_groups(isic: Path, tmp_path: Path):
    rows = _isic_rows(isic)[:60]
    src = tmp_path / "src"
    src.mkdir()
    for name, _ in rows:
        (src / name).symlink_to(isic / name)
    # 20 patients with 3 images each, strings for classes, image names without extension
    _write_csv(src / "labels.csv", ["image_id", "diagnosis", "patient_id"],
               [[Path(name).stem, label, f"P{n // 3:02d}"] for n, (name, label) in enumerate(rows)])
    assert detect_format(src) == "folder-csv"
    m = import_dataset(src, tmp_path / "ds", progress=False)
    assert m.labels == {"0": "benign", "1": "malignant"}
    assert [c.label for c in m.cases] == [int(label == "malignant") for _, label in rows]
    assert m.case_by_id[Path(rows[4][0]).stem].group == "P01"
    assert len(m.splits) == 5
    for split in m.splits:  # a patient's images stay in one fold
        val_groups = {m.case_by_id[i].group for i in split["val"]}
        train_groups = {m.case_by_id[i].group for i in split["train"]}
        assert not val_groups & train_groups
    again = import_dataset(src, tmp_path / "ds2", progress=False)
    assert again.splits == m.splits  # deterministic


def test_csv_integer_classes_kept(isic: Path, tmp_path: Path):
    rows = _isic_rows(isic)[:12]
    _write_csv(tmp_path / "grades.csv", ["file", "label"], [[name, 2 * n % 3 + 1] for n, (name, _) in enumerate(rows)])
    m = import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(tmp_path / "grades.csv"), progress=False)
    assert m.labels == {"1": "class_1", "2": "class_2", "3": "class_3"}
    assert [c.label for c in m.cases] == [2 * n % 3 + 1 for n in range(12)]


def test_csv_naming_missing_files(isic: Path, tmp_path: Path):
    rows = _isic_rows(isic)[:5]
    csv_path = _write_csv(tmp_path / "labels.csv", ["filename", "class"],
                          [[name, label] for name, label in rows] + [["ISIC_9999999.jpg", "benign"]])
    with pytest.raises(InputError) as err:
        import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), progress=False)
    assert str(csv_path) in str(err.value) and "'ISIC_9999999.jpg'" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_json_sidecar_without_the_label_key(isic: Path, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ISIC_0000002.jpg", "ISIC_0000003.jpg"):
        (src / name).symlink_to(isic / name)
    (src / "ISIC_0000002.json").symlink_to(isic / "ISIC_0000002.json")
    (src / "ISIC_0000003.json").write_text(json.dumps({"meta": {"clinical": {"age_approx": 40}}}))
    with pytest.raises(InputError, match="ISIC_0000003.json: has no label at 'meta.clinical.benign_malignant'"):
        import_dataset(src, tmp_path / "ds", progress=False)


@pytest.mark.parametrize("cell,problem", [("nan", r"line 4 holds 'nan' in column 'class': a missing value"),
                                          ("", "line 4 has no label in column 'class'")])
def test_csv_row_without_a_class_is_refused(isic: Path, tmp_path: Path, cell: str, problem: str):
    rows = [[name, label] for name, label in _isic_rows(isic)[:6]]
    rows[1][1] = cell
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("filename,class\n\n" + "\n".join(",".join(row) for row in rows) + "\n")  # a blank line 2
    with pytest.raises(InputError, match=rf"labels.csv: {problem}"):
        import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), progress=False)
    assert not (tmp_path / "ds").exists()


def test_csv_naming_an_image_twice_is_refused(isic: Path, tmp_path: Path):
    rows = _isic_rows(isic)[:6]
    csv_path = _write_csv(tmp_path / "labels.csv", ["filename", "class"], rows + [(Path(rows[2][0]).stem, "benign")])
    with pytest.raises(InputError, match=rf"labels.csv: lines 4 and 8 both name image '{rows[2][0]}'"):
        import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), progress=False)


def test_hints_name_the_option_syntax_that_works(isic: Path, tmp_path: Path):
    csv_path = _write_csv(tmp_path / "labels.csv", ["filename", "finding"], _isic_rows(isic)[:4])
    with pytest.raises(InputError, match=r"found no label column .*--option label_column=COLUMN"):
        import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), progress=False)
    m = import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), label_column="finding",
                       n_folds=2, progress=False)
    assert len(m.cases) == 4
    src = tmp_path / "src"
    src.mkdir()
    for name, label in _isic_rows(isic)[:2]:
        (src / name).symlink_to(isic / name)
        (src / name).with_suffix(".json").write_text(json.dumps({"finding": label}))
    with pytest.raises(InputError, match=r"cannot tell which JSON key .*--option label_key=KEY"):
        import_dataset(src, tmp_path / "ds2", progress=False)


def test_json_sidecar_with_a_nan_label_is_refused(isic: Path, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ISIC_0000002", "ISIC_0000003"):
        (src / f"{name}.jpg").symlink_to(isic / f"{name}.jpg")
    (src / "ISIC_0000002.json").symlink_to(isic / "ISIC_0000002.json")
    (src / "ISIC_0000003.json").write_text('{"meta": {"clinical": {"benign_malignant": NaN}}}')
    with pytest.raises(InputError, match="ISIC_0000003.json: has no label at 'meta.clinical.benign_malignant'"):
        import_dataset(src, tmp_path / "ds", progress=False)


def test_isic_covariates_kept_beside_the_images(isic: Path, tmp_path: Path):
    m = import_dataset(isic, tmp_path / "ds", progress=False,
                       covariates="meta.clinical.age_approx,meta.clinical.sex")
    assert m.extra["covariates"] == {"meta.clinical.age_approx": "numeric", "meta.clinical.sex": "categorical"}
    for case in m.cases[:40]:  # each case holds its own sidecar's values; null in the sidecar is missing
        clinical = json.loads(Path(case.images[0]).with_suffix(".json").read_text())["meta"]["clinical"]
        assert case.covariates == {"meta.clinical.age_approx": (None if clinical["age_approx"] is None
                                                                else float(clinical["age_approx"])),
                                   "meta.clinical.sex": clinical["sex"]}
    ages = [c.covariates["meta.clinical.age_approx"] for c in m.cases]
    assert 0 < ages.count(None) < len(ages)
    from medsight.datasets.manifest import Manifest

    assert Manifest.load(tmp_path / "ds").cases[0].covariates == m.cases[0].covariates  # kept in manifest.json
    plain = import_dataset(isic, tmp_path / "plain", progress=False)
    assert plain.splits == m.splits and "covariates" not in plain.extra and not plain.cases[0].covariates
    assert "covariates" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["cases"][0]


@pytest.mark.parametrize("option, problem", [
    ("meta.clinical.benign_malignant", "is the label key: it would give the label away"),
    ("meta.clinical.age", "covariate 'meta.clinical.age' has no value in any case"),
    ("meta.clinical", "ISIC_0000002.json: covariate 'meta.clinical' holds no single value"),
])
def test_json_covariates_refused(isic: Path, tmp_path: Path, option: str, problem: str):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ISIC_0000002", "ISIC_0000003"):
        for ext in (".jpg", ".json"):
            (src / (name + ext)).symlink_to(isic / (name + ext))
    with pytest.raises(InputError, match=problem):
        import_dataset(src, tmp_path / "ds", progress=False, covariates=option)
    assert not (tmp_path / "ds").exists()


def test_covariate_that_looks_numeric_is_flagged_and_the_import_lists_the_covariates(isic, tmp_path, caplog,
                                                                                     capsys):
    """Ages written with units ("63y") or a decimal comma are text, so the covariate is found categorical:
    a warning says so and how to declare it; the CLI lists each covariate's kind, levels or range, missing."""
    import logging

    from medsight.cli import main

    rows = _isic_rows(isic)[:12]
    ages = ["63y", "41y", "", "70y"] * 3
    csv_path = _write_csv(tmp_path / "labels.csv", ["file", "label", "age", "sex"],
                          [[name, label, age, "male" if n % 3 else "female"]
                           for n, ((name, label), age) in enumerate(zip(rows, ages))])
    with caplog.at_level(logging.WARNING, logger="medsight.datasets"):
        import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), covariates="age,sex",
                       progress=False)
    assert "covariate 'age' is categorical with 3 levels (e.g. '41y', '63y', '70y')" in caplog.text
    assert "declare age:numeric" in caplog.text and "'sex'" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medsight.datasets"):  # declared: the user knows
        import_dataset(isic, tmp_path / "coded", format="folder-csv", csv=str(csv_path),
                       covariates="age:categorical,sex", progress=False)
    assert "is categorical with" not in caplog.text
    numeric = _write_csv(tmp_path / "numeric.csv", ["file", "label", "age", "sex"],
                         [[name, label, age[:-1], "male" if n % 3 else "female"]
                          for n, ((name, label), age) in enumerate(zip(rows, ages))])
    capsys.readouterr()
    assert main(["import", str(isic), str(tmp_path / "cli"), "--format", "folder-csv", "--option", f"csv={numeric}",
                 "--option", "covariates=age,sex"]) == 0
    printed = capsys.readouterr().out
    assert "  age (numeric, 41 to 70; missing in 3 of 12)" in printed
    assert "  sex (categorical, 2 levels: female, male; missing in 0 of 12)" in printed


def test_csv_covariates(isic: Path, tmp_path: Path):
    rows = _isic_rows(isic)[:12]
    cells = ["63", "", "nan", "41.5"] * 3
    csv_path = _write_csv(tmp_path / "labels.csv", ["file", "label", "age", "site"],
                          [[name, label, age, "back" if n % 2 else "arm"]
                           for n, ((name, label), age) in enumerate(zip(rows, cells))])
    m = import_dataset(isic, tmp_path / "ds", format="folder-csv", csv=str(csv_path), covariates="age,site",
                       progress=False)
    assert m.extra["covariates"] == {"age": "numeric", "site": "categorical"}
    coded = import_dataset(isic, tmp_path / "coded", format="folder-csv", csv=str(csv_path),
                           covariates="age:categorical,site", progress=False)
    assert coded.extra["covariates"]["age"] == "categorical" and coded.cases[0].covariates["age"] == "63"
    assert [c.covariates["age"] for c in m.cases[:4]] == [63.0, None, None, 41.5]
    assert [c.covariates["site"] for c in m.cases[:2]] == ["arm", "back"]
    with pytest.raises(InputError, match=r"labels.csv: has no column 'weight'"):
        import_dataset(isic, tmp_path / "ds2", format="folder-csv", csv=str(csv_path), covariates="age,weight",
                       progress=False)
    with pytest.raises(InputError, match=r"labels.csv: covariate 'label' is the label column"):
        import_dataset(isic, tmp_path / "ds3", format="folder-csv", csv=str(csv_path), covariates="label",
                       progress=False)
