"""``--val-cases``: one fixed train/validation split (DRIVE's images 22, 29, 39, 40) instead of folds."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import write_isbi_pairs


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
