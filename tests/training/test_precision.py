"""Mixed precision: which autocast a plan asks for, bfloat16 only where it measures faster, and a bf16 fold."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import shrink_plan, write_isbi_pairs

from medsight import api
from medsight.training import precision
from medsight.training.precision import (as_float, autocast, choose_cpu_precision, inference_autocast,
                                         uses_grad_scaler)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_autocast_follows_the_plan_and_the_device():
    assert isinstance(autocast(CPU, {}), type(autocast(CPU, {"mixed_precision": False})))
    assert not isinstance(autocast(CPU, {}), torch.autocast)  # a CPU plan is float32 unless it says bf16
    bf16 = autocast(CPU, {"mixed_precision": "bf16"})
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    with bf16:
        out = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert out.dtype == torch.bfloat16
    assert uses_grad_scaler(CUDA, {}) and not uses_grad_scaler(CUDA, {"mixed_precision": "bf16"})
    assert not uses_grad_scaler(CPU, {"mixed_precision": "bf16"})


def test_as_float_casts_nested_outputs_and_leaves_the_rest():
    half = torch.ones(2, dtype=torch.bfloat16)
    out = as_float({"a": [half, (half, torch.ones(1, dtype=torch.long))], "b": torch.zeros(1)})
    assert out["a"][0].dtype == torch.float32 and out["a"][1][0].dtype == torch.float32
    assert out["a"][1][1].dtype == torch.long and isinstance(out["a"][1], tuple)


def test_inference_runs_in_the_training_precision_unless_the_plan_says_otherwise():
    trained_bf16 = inference_autocast(CPU, {"mixed_precision": "bf16"})
    assert isinstance(trained_bf16, torch.autocast) and trained_bf16.fast_dtype == torch.bfloat16
    told_float32 = {"mixed_precision": "bf16", "inference": {"mixed_precision": False}}
    assert not isinstance(inference_autocast(CPU, told_float32), torch.autocast)
    assert not isinstance(inference_autocast(CPU, {"mixed_precision": False}), torch.autocast)
    assert not isinstance(inference_autocast(CPU, {}), torch.autocast)  # a CPU plan is float32 by default
    told_bf16 = inference_autocast(CPU, {"mixed_precision": False, "inference": {"mixed_precision": "bf16"}})
    assert isinstance(told_bf16, torch.autocast)


@pytest.mark.parametrize("fp32, bf16, expected", [(1.0, 0.5, "bf16"), (1.0, 0.9, False), (1.0, 1.2, False)])
def test_bf16_is_chosen_only_when_it_measures_faster(monkeypatch, fp32, bf16, expected):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    timed = {False: fp32, "bf16": bf16}
    choice, timings = choose_cpu_precision(lambda p: timed[p["mixed_precision"]], {})
    assert choice == expected and timings == {"float32": fp32, "bfloat16": bf16}


def test_no_native_bf16_means_float32_without_timing(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    calls = []
    assert choose_cpu_precision(lambda p: calls.append(p) or 1.0, {}) == (False, {})
    assert not calls


@pytest.fixture
def conv_output_dtypes(monkeypatch) -> list:
    """The dtype of every 2D convolution's output from here on, in call order."""
    seen = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    return seen


def test_a_bf16_fold_runs_its_forward_in_bf16_and_keeps_float32_weights(shared_data, tmp_path, conv_output_dtypes):
    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=3, progress=False)
    shrink_plan(ds, epochs=1, mixed_precision="bf16")
    run = api.train(ds, fold=0, quiet=True)
    assert torch.bfloat16 in conv_output_dtypes  # training forward ran under autocast
    rows = [json.loads(x) for x in (run / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert rows and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    state = torch.load(run / "fold_0" / "checkpoint_final.pt", weights_only=False)
    weights = state["model"] if "model" in state else state
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())


def test_a_bf16_run_predicts_in_bf16_and_in_float32_when_the_plan_says(shared_data, tmp_path, conv_output_dtypes):
    """``predict`` (and validation) run the network in the training precision; the inference key turns it off.
    On real ISBI crops the two masks agree on nearly every pixel (bf16 rounds logits, float32 accumulates)."""
    import numpy as np
    from PIL import Image

    src = write_isbi_pairs(tmp_path / "src", shared_data, n=3, size=64)
    ds = tmp_path / "ds"
    api.import_dataset(src, ds, format="pairs", label_map="0:1,255:0", n_folds=3, progress=False)
    shrink_plan(ds, epochs=2, mixed_precision="bf16")
    run = api.train(ds, fold=0, quiet=True)
    conv_output_dtypes.clear()
    api.predict(run, [src / "images" / "em_00.png"], tmp_path / "bf16", quiet=True)
    assert conv_output_dtypes and set(conv_output_dtypes) == {torch.bfloat16}
    plan_file = run / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan.setdefault("inference", {})["mixed_precision"] = False
    plan_file.write_text(json.dumps(plan))
    conv_output_dtypes.clear()
    api.predict(run, [src / "images" / "em_00.png"], tmp_path / "float32", quiet=True)
    assert conv_output_dtypes and set(conv_output_dtypes) == {torch.float32}
    masks = [np.asarray(Image.open(tmp_path / d / "em_00.png")) for d in ("bf16", "float32")]
    assert masks[0].shape == masks[1].shape == (64, 72)
    assert (masks[0] == masks[1]).mean() > 0.98
