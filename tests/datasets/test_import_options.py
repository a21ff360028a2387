"""Import options: ``--val-cases`` (one fixed split, as DRIVE's images 22, 29, 39, 40), ``--regions``, ``--label-names``."""
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
