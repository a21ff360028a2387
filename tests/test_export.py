"""ONNX export: onnxruntime gives the torch outputs within 1e-4."""
from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from medsight import api
from medsight.planning.plan import load_plan, plan_hash
from medsight.tasks import get_task
from medsight.training.checkpoint import load_checkpoint


def test_export_matches_torch(tiny_breast, tmp_path):
    run = api.train(tiny_breast, quiet=True)
    path = api.export(run, tmp_path / "m.onnx", quiet=True)
    assert json.loads(path.with_suffix(".plan.json").read_text())["task"] == "classification"
    plan = load_plan(run)
    model = get_task("classification").build_network(plan)
    model.load_state_dict(load_checkpoint(run / "fold_0" / "checkpoint_final.pt", plan_hash(plan))["model"])
    model.eval()
    x = np.random.default_rng(0).normal(size=(5, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = ort.InferenceSession(str(path)).run(None, {"image": x})[0]
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_an_existing_folder_as_output_is_refused_and_a_failed_export_leaves_no_temporary_file(
        tiny_breast, tmp_path, monkeypatch):
    from medsight.errors import InputError

    run = api.train(tiny_breast, quiet=True)
    outputs = tmp_path / "outputs"
    folder = outputs / "existing"
    folder.mkdir(parents=True)
    with pytest.raises(InputError, match="is a folder, not a file") as e:
        api.export(run, folder, quiet=True)
    assert e.value.path == str(folder) and list(folder.iterdir()) == []

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        api.export(run, outputs / "m.onnx", quiet=True)
    assert [p.name for p in outputs.iterdir()] == ["existing"]
