"""Checkpoints: written atomically, loaded without unpickling code, refused when tampered or foreign.

A checkpoint is a ``torch.save`` of plain tensors and primitives (model, optimizer and scheduler state,
epoch, RNG-free metadata) loaded with ``weights_only=True``, next to a ``.sha256`` file of its bytes.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from medsight.datasets.manifest import atomic_write_text
from medsight.errors import CheckpointError
from medsight.tempfiles import replaced_on_success

MAGIC = "medsight-checkpoint-v1"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any], plan_hash: str) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + rename), with its checksum beside it.

    The checksum file may list more than one digest while a save is under way: first it gains the new
    digest beside the current one, then the checkpoint is replaced, then the old digest is dropped. A
    process killed at any point leaves a checkpoint whose digest is listed, so ``--resume`` works; a file
    changed or cut short afterwards matches no listed digest and is refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sum_path = _sum_path(path)
    payload = {"magic": MAGIC, "plan_hash": plan_hash, **state}
    with replaced_on_success(path) as tmp:
        _save(payload, tmp, path)
        digest = _sha256(tmp)
        listed = _listed_digests(sum_path)  # all of them: a save killed earlier may have left two
        atomic_write_text(sum_path, "\n".join([digest, *[d for d in listed if d != digest]]) + "\n")
    atomic_write_text(sum_path, digest + "\n")
    return path


def _save(payload: dict, tmp: Path, path: Path) -> None:
    """``torch.save`` into ``tmp``; a full disk, which torch reports as a cryptic "unexpected pos" failure of
    its zip writer, is raised as the ``OSError`` it is, naming the checkpoint."""
    try:
        with open(tmp, "wb") as f:  # closed here when torch's writer fails (its own handle would stay open)
            torch.save(payload, f)
    except (RuntimeError, OSError) as e:
        tmp.unlink(missing_ok=True)
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        if full or (isinstance(e, RuntimeError) and
                    shutil.disk_usage(path.parent).free < _tensor_bytes(payload) + (1 << 20)):
            code = e.errno if full else errno.ENOSPC  # a quota stays a quota
            raise OSError(code, os.strerror(code), str(path)) from e
        raise


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint state."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _sum_path(path: Path) -> Path:
    """The checksum file beside a checkpoint."""
    return Path(str(path) + ".sha256")


def _listed_digests(sum_path: Path) -> list[str]:
    """The digests a checksum file lists (none when it is missing)."""
    return sum_path.read_text().split() if sum_path.is_file() else []


def load_checkpoint(path: str | Path, plan_hash: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint made by medsight for this plan; refuse tampered, foreign or mismatched files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path=path)
    sum_path = _sum_path(path)
    if sum_path.is_file() and _sha256(path) not in _listed_digests(sum_path):
        raise CheckpointError("checkpoint bytes do not match their checksum: the file was changed or cut short",
                              path=path, fix="delete it and train again, or resume from an intact copy")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything torch raises means: not a safe medsight checkpoint
        raise CheckpointError(f"not a loadable medsight checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120] if str(e) else 'unreadable'})", path=path) from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise CheckpointError("not a medsight checkpoint (foreign file)", path=path)
    if plan_hash is not None and payload.get("plan_hash") != plan_hash:
        raise CheckpointError("checkpoint was made with another plan", path=path,
                              fix="train without --resume, or restore the plan it was made with")
    return payload
