"""Weak localisation: CAM peaks as points; the command on a real BCCD subset with image labels only."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import torch
from helpers import write_bccd_subset

from medsight.detection.weak import CamLocaliser, map_peaks, points_to_boxes


def test_peaks_are_local_maxima_in_pixels_best_first():
    scores = np.full((4, 5), -6.0)
    scores[1, 3], scores[3, 0], scores[3, 1] = 2.0, 1.0, 0.5  # (3, 1) sits beside a higher one: not a peak
    points, probs = map_peaks(scores, stride=16, min_score=0.05)
    assert points.tolist() == [[56.0, 24.0], [8.0, 56.0]]
    assert np.allclose(probs, 1 / (1 + np.exp([-2.0, -1.0])))
    assert points_to_boxes(points[:1], 8.0).tolist() == [[52.0, 20.0, 60.0, 28.0]]


def test_cam_is_at_stride_16_and_pooling_is_a_smooth_maximum():
    model = CamLocaliser(pretrained=False).eval()
    with torch.no_grad():
        cam = model.score_map(torch.zeros(1, 3, 64, 96))
        assert cam.shape == (1, 4, 6)
        # the classifier starts at zero: image logit 0 (loss log 2), not a random saturated value that kept
        # BCCD's image AUC at 0.52 (0.89 with the zero start)
        assert torch.all(model(torch.randn(2, 3, 64, 96)) == 0)
        s = torch.tensor([[[0.0, 0.0], [0.0, 5.0]]])
        assert 0.0 < model.pool(s).item() < 5.0 and model.pool(s).item() > model.pool(torch.zeros(1, 2, 2)).item()


def test_weak_command_on_bccd_subset(shared_data, tmp_path):
    src = write_bccd_subset(tmp_path / "voc", shared_data / "bccd", n_train=6, n_val=4)
    ds, out = tmp_path / "ds", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "medsight", "import", str(src), str(ds), "--format", "voc"], check=True,
                   capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "medsight", "weak", str(ds), "--positive-class", "Platelets", "-o",
                        str(out), "--epochs", "1", "--downsample", "4", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "weak localiser epoch 1/1: train_loss" in r.stdout  # long work shows progress
    result = json.loads((out / "weak.json").read_text())
    assert result["val_images"] == 4 and result["train_images"] == 6
    assert result["val_objects"] > 0 and (result["cpm"] is None or 0.0 <= result["cpm"] <= 1.0)
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert rows and all(0 <= float(r["x"]) <= 640 and 0 <= float(r["y"]) <= 480 for r in rows)
    bad = subprocess.run([sys.executable, "-m", "medsight", "weak", str(ds), "--positive-class", "Nope", "-o",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Nope" in bad.stderr and not (tmp_path / "x").exists()
