"""Import options: ``--val-cases`` (one fixed split, as DRIVE's images 22, 29, 39, 40), ``--regions``,
``--label-names``, ``--folds``; the source and DATASET_DIR are checked before anything is written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import write_isbi_pairs

from medsight.datasets import Case, import_dataset, make_splits
from medsight.errors import InputError


def _import(src, ds, *extra):
    return subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "pairs",
                           "--label-map", "0:1,255:0", *extra], capture_output=True, text=True, timeout=300)


def test_named_cases_validate_the_rest_train(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=5, size=48)
    ids_file = tmp_path / "val.txt"
    ids_file.write_text("em_01\nem_03\n")
    for how in (["em_01", "em_03"], ["em_01,em_03"], [str(ids_file)]):
        ds = tmp_path / f"ds{len(list(tmp_path.iterdir()))}"
        r = _import(src, ds, "--val-cases", *how)
        assert r.returncode == 0, r.stderr
        splits = json.loads((ds / "manifest.json").read_text())["splits"]
        assert splits == [{"train": ["em_00", "em_02", "em_04"], "val": ["em_01", "em_03"]}]


def test_unknown_case_is_one_line_error_and_nothing_written(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=48)
    r = _import(src, tmp_path / "ds", "--val-cases", "em_01", "em_99")
    assert r.returncode == 2
    assert "em_99" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ds" / "manifest.json").exists()
    r = _import(src, tmp_path / "ds", "--val-cases", "em_00", "em_01", "em_02")
    assert r.returncode == 2 and "nothing is left to train" in r.stderr


def test_regions_and_label_names_are_kept_and_checked(shared_data, tmp_path):
    from helpers import write_brats_cases

    src = write_brats_cases(tmp_path / "src", shared_data, n=2)
    ds = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "cases",
                        "--regions", "whole=1,2,3,4;core=1,3,4;enhancing=4", "--label-names", "2:oedema"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["regions"] == {"whole": [1, 2, 3, 4], "core": [1, 3, 4], "enhancing": [4]}
    assert manifest["labels"]["2"] == "oedema"
    r = subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(tmp_path / "bad"), "--format",
                        "cases", "--regions", "whole=1,9"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "[9]" in r.stderr and not (tmp_path / "bad" / "manifest.json").exists()


def test_fold_counts_that_cannot_be_made_are_refused(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=48)
    for folds, problem in (("0", "--folds 0: cross-validation needs at least 2 folds"),
                           ("4", "--folds 4 asks for more folds than the dataset has cases (3)"),
                           ("5", "--folds 5 asks for more folds than the dataset has cases (3)")):
        r = _import(src, tmp_path / "ds", "--folds", folds)
        assert r.returncode == 2 and problem in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "ds").exists()
    r = _import(src, tmp_path / "ds")  # no --folds: the default, 5, shrinks to what 3 cases allow
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "ds" / "manifest.json").read_text())["splits"]) == 3


def test_folds_asked_for_must_fit_the_smallest_class():
    cases = [Case(id=f"c{i:02d}", images=[], label=1 if i < 7 else 3) for i in range(10)]  # 7 of class 1, 3 of 3
    with pytest.raises(InputError, match=r"--folds 4 asks for more folds than the smallest class has cases \(3\)"):
        make_splits(cases, "classification", n_folds=4)
    label_of = {c.id: c.label for c in cases}
    splits = make_splits(cases, "classification", n_folds=3)  # stratified: one case of class 3 in every fold
    assert [[label_of[i] for i in split["val"]].count(3) for split in splits] == [1, 1, 1]
    assert len(make_splits(cases, "classification")) == 5  # the default is not refused, only not stratified


def test_folder_format_given_a_file_is_refused(tmp_path):
    from helpers import write_npz_subset

    npz = write_npz_subset(tmp_path / "breast.npz")
    for fmt in ("voc", "folder-json", "cases"):
        r = subprocess.run([sys.executable, "-m", "medsight", "import", str(npz), str(tmp_path / "ds"), "--format",
                            fmt], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"breast.npz: is not a folder: format {fmt} reads a folder" in r.stderr
    with pytest.raises(InputError, match="is not a file: format medmnist reads one file"):
        import_dataset(tmp_path, tmp_path / "ds", format="medmnist", progress=False)
    assert not (tmp_path / "ds").exists()


def test_import_over_another_dataset_is_refused(shared_data, tmp_path):
    from helpers import write_npz_subset

    pairs = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=48)
    ds = tmp_path / "ds"
    import_dataset(pairs, ds, format="pairs", label_map="0:1,255:0", progress=False)
    (ds / "plan.json").write_text("{}")
    m = import_dataset(pairs, ds, format="pairs", label_map="0:1,255:0", n_folds=2, progress=False)  # re-import
    assert len(m.splits) == 2
    before = (ds / "manifest.json").read_bytes()
    with pytest.raises(InputError, match=r"ds: already holds a segmentation dataset imported from .*src; this "
                                         r"import is a classification dataset of .*breast.npz \(choose a new"):
        import_dataset(write_npz_subset(tmp_path / "breast.npz"), ds, progress=False)
    assert (ds / "manifest.json").read_bytes() == before and (ds / "plan.json").read_text() == "{}"
    other = tmp_path / "web"
    other.mkdir()
    (other / "manifest.json").write_text('{"name": "an app"}')
    with pytest.raises(InputError, match="web: holds a manifest.json that is not a medsight dataset's"):
        import_dataset(pairs, other, format="pairs", progress=False)
    assert (other / "manifest.json").read_text() == '{"name": "an app"}'
    with pytest.raises(InputError, match=r"manifest.json: is a file, not a folder"):
        import_dataset(pairs, other / "manifest.json", format="pairs", progress=False)


def test_option_hints_use_the_syntax_the_command_line_takes(shared_data, tmp_path):
    """An importer option is a flag of its own or goes through --option KEY=VALUE; the hint says which."""
    import argparse

    from medsight.cli import build_parser
    from medsight.datasets.importers import OPTIONS_WITH_FLAGS

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("import", "run"):
        flags = {s for a in commands.choices[command]._actions for s in a.option_strings}
        assert {"--" + o.replace("_", "-") for o in OPTIONS_WITH_FLAGS} <= flags, command
    with pytest.raises(InputError) as caught:
        import_dataset(shared_data / "isic_uda1", tmp_path / "ds", progress=False, foo="1")
    message = str(caught.value)
    assert "option --option foo=... does not apply to format folder-json" in message
    assert "folder-json takes --option label_key=..., --option group_key=..., --option covariates=..." in message
    with pytest.raises(InputError, match="pairs takes --images-dir, --labels-dir"):
        import_dataset(shared_data / "drive/training", tmp_path / "ds", progress=False, csv="x.csv")
    assert not (tmp_path / "ds").exists()
