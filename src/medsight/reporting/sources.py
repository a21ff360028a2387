"""Where the files behind a ``metrics.json`` are: the predictions folder and the reference dataset.

``medsight evaluate`` records both under ``metrics["sources"]``; older metrics files (or moved runs) fall
back to the folder holding ``metrics.json`` when it has predictions, else ``RUN_DIR/validation_predictions``
(what ``medsight run`` writes), and to the dataset recorded in ``RUN_DIR/run.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medsight.datasets.manifest import MANIFEST_NAME, Case, Manifest
from medsight.errors import InputError
from medsight.reporting.safe import FigureSkipped

SUMMARY_FILES = ("volumes.csv", "predictions.csv", "detections.csv")


@dataclass
class Sources:
    """The predictions folder and the reference manifest of one metrics file (None when not found)."""

    predictions: Path | None
    manifest: Manifest | None

    def case(self, case_id: str) -> Case:
        """The reference case ``case_id``; FigureSkipped when there is no manifest or no such case."""
        if self.manifest is None:
            raise FigureSkipped("the reference dataset (manifest.json) was not found")
        case = self.manifest.case_by_id.get(case_id)
        if case is None:
            raise FigureSkipped(f"case {case_id!r} is not in the reference dataset")
        return case

    def predictions_dir(self) -> Path:
        """The predictions folder; FigureSkipped when it was not found."""
        if self.predictions is None:
            raise FigureSkipped("the predictions folder was not found")
        return self.predictions


def _has_predictions(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in SUMMARY_FILES)


def _load_manifest(folder: Path) -> Manifest | None:
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        return Manifest.load(folder)
    except InputError:
        return None


def find_sources(metrics_path: Path, metrics: dict, run_dir: Path) -> Sources:
    """The predictions folder and reference manifest of the metrics file at ``metrics_path``."""
    recorded = metrics.get("sources") or {}
    predictions = None
    for cand in (recorded.get("predictions"), metrics_path.parent, run_dir / "validation_predictions"):
        if cand and _has_predictions(Path(cand)):
            predictions = Path(cand)
            break
    manifest = _load_manifest(Path(recorded["reference"])) if recorded.get("reference") else None
    if manifest is None:
        info = run_dir / "run.json"
        try:
            dataset_dir = json.loads(info.read_text()).get("dataset_dir") if info.is_file() else None
        except json.JSONDecodeError:
            dataset_dir = None
        manifest = _load_manifest(Path(dataset_dir)) if dataset_dir else None
    return Sources(predictions, manifest)
