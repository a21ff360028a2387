"""The Task interface: what differs between classification, detection and segmentation.

Stages (plan, preprocess, train, predict, evaluate, report) never ask which task they serve; they call
these methods. A Task never re-implements a stage.
"""
from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from medsight.datasets.manifest import Manifest
from medsight.preprocessing.cache import CachedCases
from medsight.tempfiles import replaced_on_success


class Task(ABC):
    """One of the three jobs, behind one small interface."""

    name: str = ""
    #: default training budget (minutes on the machine planning runs on) by number of spatial dims
    default_budget_minutes: dict[int, float] = {2: 10.0, 3: 20.0}

    # -- planning ---------------------------------------------------------------------------------
    @abstractmethod
    def plan_rules(self, manifest: Manifest, fingerprint: dict, device: torch.device,
                   budget_minutes: float | None = None, measure: bool = True) -> dict:
        """Task entries of the plan: input geometry, network, loss, sampler, augmentation, batch size.

        ``budget_minutes`` (the task's default when None) may size the network, by timing candidates on
        ``device`` when ``measure`` is true."""

    @abstractmethod
    def steps_per_epoch(self, plan: dict, num_train_cases: int) -> int:
        """Optimiser steps in one epoch."""

    # -- training ---------------------------------------------------------------------------------
    @abstractmethod
    def build_network(self, plan: dict) -> nn.Module:
        """The network the plan describes."""

    @abstractmethod
    def build_loss(self, plan: dict) -> nn.Module:
        """The training loss the plan names; called as ``loss(output, target)``."""

    @abstractmethod
    def training_batches(self, data: CachedCases, plan: dict, epoch_seed: tuple[int, ...],
                         steps: int) -> Iterator[tuple[torch.Tensor, Any]]:
        """``steps`` (input, target) batches of one epoch, deterministic given ``epoch_seed``."""

    def measure_epoch_parts(self, manifest: Manifest, plan: dict, device: torch.device,
                            fingerprint: dict | None = None) -> dict[str, float]:
        """Seconds an epoch spends beside its optimiser steps, timed on real data for the budget
        (:func:`medsight.planning.budget.schedule_epochs`); empty keeps the flat allowances."""
        return {}

    def example_batch(self, plan: dict) -> tuple[torch.Tensor, Any]:
        """A batch of the plan's shapes (random values) to time a training step."""
        raise NotImplementedError

    @abstractmethod
    def validate(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device) -> dict[str, float]:
        """Quick validation metrics during training; ``score`` (higher is better) picks the best epoch."""

    def fit_companions(self, plan: dict, train_data: CachedCases) -> dict:
        """Models fitted beside the network on the fold's training cases (classification: the clinical
        covariates'), as plain JSON; saved with the decisions and given to :meth:`finalize`. None here."""
        return {}

    def finalize(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device, fold_dir: Path,
                 companions: dict | None = None) -> dict:
        """After training: decisions made on validation data (post-processing, thresholds); saved by the caller."""
        return {}

    # -- inference --------------------------------------------------------------------------------
    #: cases predicted together (small images gain from batching; volumes go one at a time)
    predict_chunk: int = 1

    def with_inference_options(self, plan: dict, test_time_augmentation: bool = True,
                               overlap: float | None = None) -> dict:
        """The plan as ``predict`` should use it: test-time mirroring off when asked (nnU-Net's
        ``--disable_tta``), the sliding windows' ``overlap`` (a fraction of the window, 0 <= f < 1) when
        given. ``inference`` lies outside the plan's hash, so the checkpoints still load."""
        inference = dict(plan.get("inference") or {})
        if not test_time_augmentation:
            inference["mirror_axes"] = []
        if overlap is not None:
            inference["overlap"] = float(overlap)
        return {**plan, "inference": inference}

    def predict_cases(self, models: list[nn.Module], arrays: list[np.ndarray], plan: dict, device: torch.device) -> list:
        """Network-space predictions of several preprocessed cases (by default one after the other)."""
        return [self.predict_case(models, a, plan, device) for a in arrays]

    @abstractmethod
    def predict_case(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device) -> Any:
        """Network-space prediction of one preprocessed case (C, *s), ensembled over ``models``."""

    def write_case(self, result: dict, out_dir: Path, plan: dict, decisions: dict) -> list[dict]:
        """Write one case's own files (a mask, ...) into ``out_dir``; return its rows for the summary file.

        ``result`` has ``case``, ``prediction`` (network space), ``props``, ``image`` (the original Image),
        ``source`` (input path), ``extension`` (the input's), ``save_probabilities``, ``known_spacing``.
        """
        return []

    @abstractmethod
    def write_summary(self, rows: list[dict], out_dir: Path, plan: dict, decisions: dict) -> list[Path]:
        """Write the summary table (predictions.csv, volumes.csv, detections.csv) from every case's rows."""

    # -- evaluation -------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, out_dir: Path, manifest: Manifest, case_ids: list[str] | None = None) -> dict:
        """Metrics of the predictions in ``out_dir`` against the manifest's references."""


def as_tensor_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack (C, *s) arrays into one float32 batch tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays))).float()



def write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    """Write ``rows`` as a CSV with columns ``fields``, atomically (temp file + rename)."""
    with replaced_on_success(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
