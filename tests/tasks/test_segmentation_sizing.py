"""A CPU segmentation plan widens its U-Net only while the budget still buys ``MIN_STEPS`` steps."""
from __future__ import annotations

import torch
from helpers import write_isbi_pairs

from medsight import api
from medsight.datasets.manifest import Manifest
from medsight.nets.unet import receptive_field
from medsight.tasks.segmentation import BASE_FEATURES, MIN_STEPS, SegmentationTask


def test_budget_sizes_the_unet_and_the_plan_passes_it_through(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", progress=False)
    manifest, fp = Manifest.load(ds), api.fingerprint(ds, progress=False)
    task, cpu = SegmentationTask(), torch.device("cpu")
    tiny = task.plan_rules(manifest, fp, cpu, budget_minutes=0.001)["network"]["features"]
    huge = task.plan_rules(manifest, fp, cpu, budget_minutes=1e6)["network"]["features"]
    unmeasured = task.plan_rules(manifest, fp, cpu, budget_minutes=0.001, measure=False)["network"]["features"]
    assert tiny[0] == BASE_FEATURES[0] and huge[0] == BASE_FEATURES[-1] == unmeasured[0] == 32
    assert len(tiny) == len(huge)  # width changes, depth (from the patch) does not
    assert MIN_STEPS[2] > MIN_STEPS[3] > 0
    plan = api.plan(ds, budget_minutes=0.001, quiet=True, device="cpu")  # a GPU plan takes nnU-Net's 32
    assert plan["network"]["features"][0] == BASE_FEATURES[0] and plan["budget_minutes"] == 0.001


def test_cpu_plan_in_2d_stops_its_stages_once_they_see_the_whole_patch(shared_data, tmp_path):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=128)  # 128 x 136 crops
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", progress=False)
    manifest, fp = Manifest.load(ds), api.fingerprint(ds, progress=False)
    task = SegmentationTask()
    cpu = task.plan_rules(manifest, fp, torch.device("cpu"), budget_minutes=0.001)
    gpu = task.plan_rules(manifest, fp, torch.device("cuda"), measure=False)
    # nnU-Net pools down to 4 pixels: 6 stages, the patch padded to a multiple of 32 (136 -> 160)
    assert len(gpu["network"]["strides"]) == 6 and gpu["patch_size"] == [128, 160]
    # 5 stages already see 155 pixels, 4 only 75: the CPU plan stops at 5 (136 -> 144, a multiple of 16)
    net = cpu["network"]
    assert len(net["strides"]) == len(net["features"]) == len(net["kernel_sizes"]) == 5
    assert cpu["patch_size"] == [128, 144]
    assert receptive_field(net["strides"], net["kernel_sizes"]) == [155, 155]
    assert receptive_field(net["strides"][:4], net["kernel_sizes"][:4]) == [75, 75]
