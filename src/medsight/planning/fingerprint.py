"""The dataset fingerprint: sizes, spacings, intensities, class frequencies, object sizes and where the
foreground sits (``foreground_layout``, see ``layout.py``).

Written to ``DATASET_DIR/fingerprint.json``; the planning rules read only this and the manifest.
"""
from __future__ import annotations

import json
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from medsight.datasets.loading import case_signature, read_case_image, read_case_label
from medsight.datasets.manifest import Case, Manifest, atomic_write_text
from medsight.io.formats import lacks_spacing
from medsight.parallel import parallel_map
from medsight.planning.layout import coarse_layout, layout_summary

FINGERPRINT_NAME = "fingerprint.json"
#: bumped when the fingerprint gains facts the planning rules read (2: ``foreground_layout``, ``spacing_known``);
#: a saved fingerprint of another version is computed again
FINGERPRINT_VERSION = 2
SAMPLES_PER_CASE = 10000


def _case_facts(case: Case, manifest: Manifest) -> dict:
    """Facts of one case (runs in a worker process)."""
    img = read_case_image(case, manifest)
    lbl = read_case_label(case, manifest, reference=img)
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    facts: dict = {"id": case.id, "shape": list(img.spatial_shape), "spacing": list(img.spacing),
                   "channels": img.num_channels, "signature": case_signature(case),
                   "spacing_known": not any(lacks_spacing(ref) for ref in case.images)}
    if lbl is not None:
        values, counts = np.unique(lbl.array, return_counts=True)
        facts["label_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
        fg = lbl.array[0] > 0
        if manifest.task == "segmentation":
            present = sorted(int(v) for v in manifest.labels if int(v) > 0)
            facts["layout"] = coarse_layout(lbl.array[0], present)
        region = fg if fg.any() else np.ones(fg.shape, bool)
    else:
        region = np.ones(img.spatial_shape, bool)
    idx = np.flatnonzero(region)
    take = rng.choice(idx, size=min(SAMPLES_PER_CASE, idx.size), replace=False) if idx.size else idx
    facts["intensity_samples"] = [img.array[c].reshape(-1)[take].astype(float).round(4).tolist()
                                  for c in range(img.num_channels)]
    facts["nonzero_fraction"] = float(np.mean(np.any(img.array != 0, axis=0)))
    if manifest.task == "detection":
        facts["box_sizes"] = [[b["box"][img.ndim + a] - b["box"][a] for a in range(img.ndim)] for b in case.boxes]
        facts["box_labels"] = [int(b["label"]) for b in case.boxes]
    return facts


def compute_fingerprint(manifest: Manifest, workers: int | None = None, progress: bool = True) -> dict:
    """Fingerprint of every case of ``manifest`` (read in parallel) aggregated into dataset statistics."""
    facts = parallel_map(partial(_case_facts, manifest=manifest), manifest.cases, workers, desc="fingerprint",
                         progress=progress)
    shapes = np.array([f["shape"] for f in facts], dtype=float)
    spacings = np.array([f["spacing"] for f in facts], dtype=float)
    n_channels = facts[0]["channels"]
    channels = []
    for c in range(n_channels):
        samples = np.concatenate([np.asarray(f["intensity_samples"][c]) for f in facts])
        channels.append({
            "mean": float(samples.mean()), "std": float(samples.std()),
            "min": float(samples.min()), "max": float(samples.max()),
            "percentile_00_5": float(np.percentile(samples, 0.5)),
            "percentile_99_5": float(np.percentile(samples, 99.5)),
            "median": float(np.median(samples)),
        })
    fp: dict = {
        "version": FINGERPRINT_VERSION, "task": manifest.task, "dims": manifest.dims, "num_cases": len(facts), "num_channels": n_channels,
        "shapes": shapes.astype(int).tolist(), "spacings": spacings.tolist(),
        "median_shape": np.median(shapes, 0).tolist(), "median_spacing": np.median(spacings, 0).tolist(),
        "min_shape": shapes.min(0).astype(int).tolist(), "max_shape": shapes.max(0).astype(int).tolist(),
        "channels": channels,
        "median_nonzero_fraction": float(np.median([f["nonzero_fraction"] for f in facts])),
        "spacing_known": all(f["spacing_known"] for f in facts),
        "case_signatures": {f["id"]: f["signature"] for f in facts},
    }
    if manifest.task == "segmentation":
        totals: dict[str, int] = {}
        present: dict[str, int] = {}
        for f in facts:
            for v, n in f["label_counts"].items():
                totals[v] = totals.get(v, 0) + n
                present[v] = present.get(v, 0) + 1
        all_vox = sum(totals.values())
        fp["class_voxel_fraction"] = {v: totals[v] / all_vox for v in sorted(totals, key=int)}
        fp["class_cases_present"] = {v: present[v] for v in sorted(present, key=int)}
        layout = layout_summary([f["layout"] for f in facts if "layout" in f])
        if layout is not None:
            fp["foreground_layout"] = layout
    elif manifest.task == "classification":
        y = [c.label for c in manifest.cases if c.label is not None]
        vals, counts = np.unique(np.asarray(y), return_counts=True)
        fp["class_counts"] = {str(int(v)): int(n) for v, n in zip(vals, counts)}
    else:
        sizes = np.array([s for f in facts for s in f["box_sizes"]], dtype=float).reshape(-1, manifest.dims)
        labels = [lab for f in facts for lab in f["box_labels"]]
        fp["num_boxes"] = int(len(sizes))
        fp["boxes_per_image"] = float(len(sizes) / max(1, len(facts)))
        fp["object_size"] = {
            str(v): {"median": np.median(sizes[np.asarray(labels) == v], 0).tolist(),
                     "min": sizes[np.asarray(labels) == v].min(0).tolist(),
                     "max": sizes[np.asarray(labels) == v].max(0).tolist(),
                     "count": int(np.sum(np.asarray(labels) == v))}
            for v in sorted(set(labels))}
    return fp


def save_fingerprint(fp: dict, dataset_dir: str | Path) -> Path:
    """Write ``fingerprint.json`` atomically."""
    path = Path(dataset_dir) / FINGERPRINT_NAME
    atomic_write_text(path, json.dumps(fp, indent=1))
    return path


def load_fingerprint(dataset_dir: str | Path) -> dict | None:
    """The saved fingerprint, or None."""
    path = Path(dataset_dir) / FINGERPRINT_NAME
    return json.loads(path.read_text()) if path.is_file() else None
