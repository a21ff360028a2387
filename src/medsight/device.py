"""The compute device and thread count, chosen once per command."""
from __future__ import annotations

import os

import torch

from medsight.errors import InputError


def resolve_device(name: str | None = None) -> torch.device:
    """``cuda`` when available unless told otherwise; ``name`` may be cpu, cuda, cuda:1, mps."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}", fix="use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but this torch build sees no GPU", fix="use --device cpu")
    return dev


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: the machine's cores); return the number used."""
    n = threads or int(os.environ.get("MEDSIGHT_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
