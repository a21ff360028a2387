"""What a dataset is (``Manifest``: task, channels, label names, cases, splits) and how it is imported.

``import_dataset(SOURCE, DATASET_DIR)`` reads the layouts people have (MSD / nnU-Net folders, image +
mask folders, case folders, image folders with a CSV or JSON sidecars, MedMNIST .npz, Pascal VOC,
DICOM series), checks every file and writes ``DATASET_DIR/manifest.json``.
"""
from __future__ import annotations

from medsight.datasets.manifest import MANIFEST_NAME, Case, Manifest, atomic_write_text, make_splits
from medsight.datasets.check import check_dataset
from medsight.datasets.importers import FORMATS, detect_format, format_options, import_dataset

__all__ = ["MANIFEST_NAME", "Case", "Manifest", "atomic_write_text", "make_splits", "check_dataset", "FORMATS", "detect_format", "format_options", "import_dataset"]
