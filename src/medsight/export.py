"""Export a trained network to ONNX, with the plan that says how to preprocess its inputs."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from medsight.errors import CheckpointError, InputError
from medsight.planning.plan import load_plan, plan_hash
from medsight.tasks import get_task
from medsight.training.checkpoint import load_checkpoint
from medsight.training.loop import FINAL
from medsight.tempfiles import replaced_on_success


class _EvalOutput(torch.nn.Module):
    """The full-resolution output only (no deep-supervision list)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def export_onnx(run_dir: Path, output: Path | None = None, fold: int | str | None = None) -> Path:
    """Write the network of one fold (the first trained one by default) as ONNX and the plan beside it, with
    the fold's decisions (a classifier's threshold and covariate model, post-processing) under ``decisions``."""
    output = output or run_dir / "model.onnx"
    if output.is_dir():
        raise InputError("is a folder, not a file", path=output, fix="give the ONNX file to write, e.g. -o model.onnx")
    plan = load_plan(run_dir)
    folds = sorted(d for d in run_dir.glob("fold_*") if (d / FINAL).is_file())
    if fold is not None:
        folds = [d for d in folds if d.name == f"fold_{fold}"]
    if not folds:
        raise CheckpointError("no trained fold to export", path=run_dir, fix="train first, or name a trained --fold")
    task = get_task(plan["task"])
    model = task.build_network(plan)
    model.load_state_dict(load_checkpoint(folds[0] / FINAL, plan_hash(plan))["model"])
    model = _EvalOutput(model.eval())
    x, _ = task.example_batch({**plan, "batch_size": 1})
    output.parent.mkdir(parents=True, exist_ok=True)
    spatial = {i + 2: f"d{i}" for i in range(x.dim() - 2)} if plan["task"] != "classification" else {}
    with replaced_on_success(output) as tmp:
        torch.onnx.export(model, (x,), str(tmp), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "batch", **spatial}, "logits": {0: "batch", **spatial}},
                          dynamo=False)
    plan_out = output.with_suffix(".plan.json")
    decisions_path = folds[0] / "decisions.json"
    decisions = json.loads(decisions_path.read_text()) if decisions_path.is_file() else {}
    plan_out.write_text(json.dumps({**plan, "exported_from": str(folds[0]), "decisions": decisions}, indent=1))
    return output
