"""Hard-image mining across epochs with the selective sampler, kept exact under ``--resume``.

The training loop asks a task for one epoch's batches at a time and never hands it the model, so the
per-image losses that drive :class:`medsight.sampling.SelectiveSampler` are recorded by the loss while
the epoch runs (``target["image_losses"]``) and written, after the epoch's last step, to
``<folder>/<key>_epoch<E>_rank<R>of<W>.json`` (item indices and their losses). The sampler of epoch E is
rebuilt by replaying the files of epochs 0..E-1 in order, so it is a pure function of files that exist
before epoch E's checkpoint does: a resumed run draws exactly what an uninterrupted run draws (on a CPU,
where the losses themselves are reproducible). ``key`` names the run (plan, seed and training cases).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from medsight.datasets.manifest import atomic_write_text
from medsight.sampling import SelectiveSampler


def run_key(plan: dict, case_ids: Sequence[str]) -> str:
    """A short hash of everything that decides the losses: the plan and the training cases."""
    h = hashlib.sha1(json.dumps(plan, sort_keys=True, default=str).encode())
    h.update("\n".join(case_ids).encode())
    return h.hexdigest()[:12]


class SelectiveState:
    """Per-epoch loss files of one run and the sampler they give at the start of any epoch."""

    def __init__(self, folder: str | Path, key: str, n_items: int, uniform_share: float = 0.5,
                 momentum: float = 0.0):
        self.folder = Path(folder)
        self.key = key
        self.n_items = int(n_items)
        self.uniform_share, self.momentum = float(uniform_share), float(momentum)

    def path(self, epoch: int, rank: int, world: int) -> Path:
        """The file holding what rank ``rank`` of ``world`` saw in ``epoch``."""
        return self.folder / f"{self.key}_epoch{epoch:05d}_rank{rank}of{world}.json"

    def record(self, epoch: int, indices: Sequence[int], losses: Sequence[float], rank: int = 0,
               world: int = 1) -> Path:
        """Write the items seen in ``epoch`` (by this rank) and their losses, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"indices": [int(i) for i in indices], "losses": [float(v) for v in losses]}
        path = self.path(epoch, rank, world)
        atomic_write_text(path, json.dumps(payload))
        return path

    def sampler(self, epoch: int, world: int = 1) -> SelectiveSampler:
        """The sampler at the start of ``epoch``: initial weights updated by every earlier epoch's losses."""
        sampler = SelectiveSampler(self.n_items, uniform_share=self.uniform_share, momentum=self.momentum)
        for e in range(epoch):
            for r in range(world):
                path = self.path(e, r, world)
                if not path.is_file():
                    warnings.warn(f"{path}: selective-sampling losses of epoch {e} are missing; "
                                  "that epoch leaves the sampling weights unchanged", stacklevel=2)
                    continue
                seen = json.loads(path.read_text())
                if seen["indices"]:
                    sampler.update(seen["indices"], seen["losses"])
        return sampler

    def draw(self, epoch: int, count: int, rng: np.random.Generator, world: int = 1) -> np.ndarray:
        """``count`` item indices for ``epoch``, drawn with replacement by the replayed weights."""
        return self.sampler(epoch, world).draw(count, rng, replace=True)
