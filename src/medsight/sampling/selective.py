"""Selective sampling (van Grinsven et al., IEEE TMI 2016): draw hard samples more often.

Each item (a case, a patch index, a candidate location) keeps a weight; after an epoch the training loop
reports how wrong the network was on the items it saw (losses, or wrong/right flags), and the next
epoch draws items with probability proportional to those weights. A floor keeps easy items in play:
a ``uniform_share`` of every draw is uniform over all items.

Example:
    >>> import numpy as np
    >>> s = SelectiveSampler(4, uniform_share=0.0)
    >>> s.update([0, 1, 2, 3], [True, False, False, False])
    >>> s.draw(2, np.random.default_rng(0), replace=True).tolist()
    [0, 0]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from medsight.errors import InputError


class SelectiveSampler:
    """Per-item weights updated from losses or wrong flags; draws proportional to weight (with a uniform floor).

    ``initial_weight``: weight of items never seen (1.0: unseen items count as hard until shown easy).
    ``momentum``: share of the old weight kept on update (0: replace, as in the paper).
    """

    def __init__(self, n_items: int, uniform_share: float = 0.1, initial_weight: float = 1.0, momentum: float = 0.0):
        if n_items < 1:
            raise InputError(f"selective sampling needs at least one item, got {n_items}")
        if not 0.0 <= uniform_share <= 1.0 or not 0.0 <= momentum < 1.0 or initial_weight < 0:
            raise InputError(f"bad selective sampler settings: uniform_share={uniform_share}, momentum={momentum}, "
                             f"initial_weight={initial_weight}", fix="uniform_share in [0, 1], momentum in [0, 1)")
        self.n_items = int(n_items)
        self.uniform_share = float(uniform_share)
        self.momentum = float(momentum)
        self.weights = np.full(self.n_items, float(initial_weight), dtype=np.float64)

    def update(self, indices: Sequence[int], values: Sequence[float] | Sequence[bool]) -> None:
        """Set the weight of ``indices`` from their losses (>= 0) or wrong flags (True = misclassified)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if idx.shape != vals.shape:
            raise InputError(f"{idx.size} indices but {vals.size} values for the selective sampler")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_items):
            raise InputError(f"item index outside 0..{self.n_items - 1}")
        if not np.all(np.isfinite(vals)):
            raise InputError("non-finite loss given to the selective sampler", fix="check the loss for NaN/inf")
        vals = np.maximum(vals, 0.0)
        # an item seen twice in one update keeps its last value, as a loop over them would
        self.weights[idx] = self.momentum * self.weights[idx] + (1.0 - self.momentum) * vals

    def probabilities(self) -> np.ndarray:
        """Drawing probability of every item: weight share mixed with a uniform floor."""
        uniform = np.full(self.n_items, 1.0 / self.n_items)
        total = self.weights.sum()
        if total <= 0:
            return uniform
        return (1.0 - self.uniform_share) * self.weights / total + self.uniform_share * uniform

    def draw(self, k: int, rng: np.random.Generator, replace: bool = False) -> np.ndarray:
        """``k`` item indices drawn with probability proportional to weight (without replacement if possible)."""
        p = self.probabilities()
        replace = replace or k > np.count_nonzero(p)
        return rng.choice(self.n_items, size=int(k), replace=replace, p=p)

    def state_dict(self) -> dict:
        """Weights and settings, for checkpoints (exact resume)."""
        return {"weights": self.weights.tolist(), "uniform_share": self.uniform_share, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        weights = np.asarray(state["weights"], dtype=np.float64)
        if weights.shape != (self.n_items,):
            raise InputError(f"selective sampler state holds {weights.size} items, expected {self.n_items}")
        self.weights = weights
        self.uniform_share = float(state["uniform_share"])
        self.momentum = float(state["momentum"])
