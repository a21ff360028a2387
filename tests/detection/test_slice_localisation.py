"""Localisation by slice classification: runs of positive slices -> a 3D box; the command on real BraTS crops."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
from helpers import write_brats_cases

from medsight.detection.slice_localisation import axis_slices, longest_run, mask_box, slice_labels


def test_longest_run_smoothing_and_fallback():
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.95, 0.7, 0.1, 0.9, 0.1])
    assert longest_run(p, smooth=1) == (3, 7)
    assert longest_run(np.array([0.1, 0.3, 0.2]), smooth=1) == (1, 2)  # none passes: the most probable slice
    # means over 3 (edges repeated): .37 .40 .63 .63 .88 .85 .58 .57 .37 .37 -> slices 2..7 pass
    assert longest_run(p, smooth=3) == (2, 8)


def test_mask_box_and_slice_labels_by_hand():
    mask = np.zeros((6, 5, 4), bool)
    mask[2:4, 1, 3] = True
    assert mask_box(mask).tolist() == [2, 1, 3, 4, 2, 4]
    assert slice_labels(mask, 0).tolist() == [0, 0, 1, 1, 0, 0]
    assert slice_labels(mask, 2).tolist() == [0, 0, 0, 1]
    assert mask_box(np.zeros((2, 2, 2), bool)) is None
    s = axis_slices(np.random.default_rng(0).normal(size=(2, 6, 5, 4)).astype(np.float32), 1, 8)
    assert s.shape == (5, 5, 8, 8) and np.all(s[:, 3] == 1) and np.all(s[:, [2, 4]] == 0)


def test_localise_command_on_brats_crops(shared_data, tmp_path):
    src = write_brats_cases(tmp_path / "src", shared_data, n=3)
    ds, out = tmp_path / "ds", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "cases", "--folds", "3",
                    "--regions", "whole=1,2,3,4;enhancing=4"], check=True, capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "medsight", "localise", str(ds), "-o", str(out), "--structure", "whole",
                        "--epochs", "1", "--side", "24", "--folds", "0", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "boxes.csv").open()))
    result = json.loads((out / "localise.json").read_text())
    assert len(rows) == 2 and result["label_values"] == [1, 2, 3, 4]
    for row in rows:
        box = [int(row[k]) for k in ("x0", "y0", "z0", "x1", "y1", "z1")]
        assert all(lo < hi for lo, hi in zip(box[:3], box[3:])) and box[3:] <= [40, 40, 24]
        assert 0.0 <= float(row["iou"]) <= 1.0
    # each finished fold is kept: the same command again trains nothing and writes the same boxes
    parts = sorted(p.name for p in out.glob("parts/*/fold_*.json"))
    assert parts == ["fold_0.json", "fold_1.json"]
    again = subprocess.run(r.args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("kept from") == 2, again.stderr
    assert list(csv.DictReader((out / "boxes.csv").open())) == rows
    bad = subprocess.run([sys.executable, "-m", "medsight", "localise", str(ds), "-o", str(tmp_path / "x"),
                          "--structure", "nonsense"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nonsense" in bad.stderr and not (tmp_path / "x").exists()
    for args, problem in ((["--folds", "7"], "no fold 7 in this dataset"), (["--epochs", "0"], "epochs"),
                          (["--side", "2"], "side")):
        bad = subprocess.run([sys.executable, "-m", "medsight", "localise", str(ds), "-o", str(tmp_path / "x"), *args],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and problem in bad.stderr and not (tmp_path / "x").exists(), bad.stderr
