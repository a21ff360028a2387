"""Which patches a network sees: uniform and foreground-oversampled patches, batches, selective sampling,
multi-scale and 2.5D views around a point."""
from __future__ import annotations

from medsight.sampling.patches import (
    BatchLoader,
    PatchSampler,
    PatchSource,
    extract_multiscale,
    extract_orthogonal_planes,
    initial_patch_size,
    sample_class_locations,
    segmentation_batches,
)
from medsight.sampling.regions import labels_to_regions, region_table, region_training, region_values
from medsight.sampling.selective import SelectiveSampler

__all__ = [
    "BatchLoader",
    "PatchSampler",
    "PatchSource",
    "SelectiveSampler",
    "extract_multiscale",
    "extract_orthogonal_planes",
    "initial_patch_size",
    "labels_to_regions",
    "region_table",
    "region_training",
    "region_values",
    "sample_class_locations",
    "segmentation_batches",
]
