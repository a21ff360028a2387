"""Mixed precision: float16/bfloat16 autocast on CUDA, bfloat16 on a CPU whose measured step it speeds up.

The plan's ``mixed_precision`` says which: ``"auto"`` (or absent) is float16 on CUDA and float32 on a CPU;
``"bf16"`` is bfloat16 on either; ``false`` is float32 everywhere. Only the forward pass runs under
autocast; losses are computed in float32 on the outputs cast back (Dice sums and log-softmax keep their
precision).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

#: a CPU plan takes bfloat16 only when its timed step is at least this much faster than float32
CPU_BF16_MIN_SPEEDUP = 1.25


def autocast(device: torch.device, plan: dict) -> contextlib.AbstractContextManager:
    """The autocast context the plan asks for on ``device`` (a null context for float32)."""
    mode = plan.get("mixed_precision", "auto")
    if device.type == "cuda" and mode in ("auto", True, "fp16", "bf16"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)
    if device.type == "cpu" and mode == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_autocast(device: torch.device, plan: dict) -> contextlib.AbstractContextManager:
    """The autocast context for prediction and validation: the plan's ``inference.mixed_precision`` if set,
    else the training precision (``mixed_precision``). A network trained in bfloat16 predicts in it, as
    nnU-Net predicts in float16 on a GPU; ``"inference": {"mixed_precision": false}`` predicts in float32."""
    mode = plan.get("inference", {}).get("mixed_precision", plan.get("mixed_precision", "auto"))
    return autocast(device, {"mixed_precision": mode})


def uses_grad_scaler(device: torch.device, plan: dict) -> bool:
    """float16 on CUDA needs loss scaling; bfloat16 (its float32 exponent range) and float32 do not."""
    return device.type == "cuda" and plan.get("mixed_precision", "auto") in ("auto", True, "fp16")


def as_float(outputs: Any) -> Any:
    """Network outputs (a tensor, or lists, tuples and dicts of them) cast to float32 where they are not."""
    if torch.is_tensor(outputs):
        return outputs.float() if outputs.is_floating_point() and outputs.dtype != torch.float32 else outputs
    if isinstance(outputs, dict):
        return {k: as_float(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(as_float(v) for v in outputs)
    return outputs


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX); emulated bf16 is slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: no query, assume not
        return False


def choose_cpu_precision(step_seconds: Callable[[dict], float], plan: dict) -> tuple[str | bool, dict[str, float]]:
    """``"bf16"`` when this CPU has native bfloat16 and ``step_seconds`` (of a plan) measures it at least
    :data:`CPU_BF16_MIN_SPEEDUP` times faster than float32, else ``False``; with the two timings."""
    if not cpu_bf16_supported():
        return False, {}
    fp32 = step_seconds({**plan, "mixed_precision": False})
    bf16 = step_seconds({**plan, "mixed_precision": "bf16"})
    timings = {"float32": round(fp32, 4), "bfloat16": round(bf16, 4)}
    return ("bf16" if fp32 >= CPU_BF16_MIN_SPEEDUP * bf16 else False), timings
