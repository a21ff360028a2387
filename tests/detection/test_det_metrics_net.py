"""The detection metrics report (hand-computed AP, COCO mAP, CPM) and the dense detector networks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.detection.metrics import detection_report
from medsight.nets import create_model
from medsight.nets.centernet import HEATMAP_PRIOR, centernet
from medsight.nets.unet import plan_unet


def test_report_by_hand_two_images_one_false_positive():
    dets = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([0.9, 0.8]), np.array(["A", "A"])),
            (np.array([[20, 20, 30, 30]], float), np.array([0.7]), np.array(["A"]))]
    gts = [(np.array([[0, 0, 10, 10]], float), np.array(["A"])), (np.array([[20, 20, 30, 30]], float), np.array(["A"]))]
    r = detection_report(dets, gts, ["A", "B"], n_boot=200)
    a = r["per_class"]["A"]
    # ranking TP, FP, TP: precision 1 up to recall 0.5, then 2/3 at recall 1
    assert a["ap50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert a["map_coco"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)  # exact boxes: same at every IoU
    # FROC: sensitivity 0.5 at 0 FP/image, 1.0 once 0.5 FP/image are allowed
    assert a["froc"]["sensitivities"] == pytest.approx([0.5, 0.5, 1, 1, 1, 1, 1])
    assert a["cpm"] == pytest.approx(6 / 7)
    assert a["n_gt"] == 2 and a["n_detections"] == 3
    assert r["per_class"]["B"]["ap50"] is None and r["per_class"]["B"]["ap50_ci95"] is None
    assert r["summary"]["ap50"]["value"] == pytest.approx(a["ap50"])  # B has no ground truth: not averaged
    lo, hi = r["summary"]["ap50"]["ci95"]
    assert 0 <= lo <= hi <= 1


def test_centre_in_box_froc_counts_a_loose_box_that_iou_misses():
    # one 3D lesion; the best detection is three times too wide along x, so IoU misses it
    lesion = np.array([[10, 10, 10, 20, 20, 20]], float)
    loose = np.array([[0, 10, 10, 30, 20, 20]], float)  # IoU 1/3, centre (15, 15, 15) inside the lesion
    away = np.array([[40, 40, 40, 50, 50, 50]], float)  # a false positive either way
    dets = [(np.concatenate([loose, away]), np.array([0.9, 0.5]), np.array(["T", "T"]))]
    r = detection_report(dets, [(lesion, np.array(["T"]))], ["T"], n_boot=50)
    t = r["per_class"]["T"]
    assert t["cpm"] == 0.0 and t["ap50"] == 0.0
    # centre hits: the lesion is found first (0 FP), so every rate has sensitivity 1
    assert t["froc_centre"]["sensitivities"] == pytest.approx([1.0] * 7)
    assert t["cpm_centre"] == pytest.approx(1.0) and r["summary"]["cpm_centre"]["value"] == pytest.approx(1.0)


def test_centernet_shapes_prior_and_registry():
    net = create_model("centernet", num_classes=3, pretrained=False, frozen_units=6).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 50, 70))
    assert tuple(out.shape) == (1, 3 + 4, math.ceil(50 / 4), math.ceil(70 / 4))
    assert float(torch.sigmoid(out[0, :3]).mean()) == pytest.approx(HEATMAP_PRIOR, abs=0.02)
    frozen = [p for p in net.trunk.encoder.backbone_units()[0].parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert not ids(net.backbone_parameters()) & ids(net.head_parameters())
    assert ids(net.backbone_parameters()) | ids(net.head_parameters()) == ids(net.parameters())


def test_centernet_unet_trunk_3d_stride_and_odd_sizes():
    topo = plan_unet([32, 32, 16], [1.0, 1.0, 2.0], base_features=4)
    net = centernet(num_classes=2, encoder="unet", spatial_dims=3, in_channels=2, **topo).eval()
    assert max(net.stride) <= 4
    out = net(torch.zeros(1, 2, 30, 33, 14))
    grid = tuple(math.ceil(s / st) for s, st in zip((30, 33, 14), net.stride))
    assert tuple(out.shape) == (1, 2 + 6, *grid)
