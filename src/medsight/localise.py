"""``medsight localise DATASET_DIR``: 3D boxes of a structure by slice classification, cross-validated.

For each fold, a slice classifier (:mod:`medsight.detection.slice_localisation`) learns from the training
volumes which slices, along each axis, hold the structure (a region of the dataset, some label values, or
any foreground); each held-out volume then gets the box bounded by the longest positive run per axis.
Scored per case by box IoU against the reference mask's bounding box, and the distance of each face.
Outputs in OUT_DIR: ``boxes.csv`` (case, predicted and true box, IoU) and ``localise.json``. Each finished
fold is kept in ``OUT_DIR/parts/<settings>/fold_K.json``, so a run cut short and started again with the same
dataset and settings trains only the folds it had not finished.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from medsight.datasets.manifest import MANIFEST_NAME, Manifest, atomic_write_text
from medsight.errors import InputError, as_list, output_folder, positive
from medsight.locks import one_writer
from medsight.kept_work import settings_key


def structure_values(manifest: Manifest, structure: str | None) -> tuple[str, list[int]]:
    """(name, label values) of ``structure``: a region name, a label name or value, or 'a,b,c'; None = all."""
    foreground = sorted(int(v) for v in manifest.labels if int(v) != 0)
    if structure is None:
        return "foreground", foreground
    if structure in manifest.regions:
        return structure, [int(v) for v in manifest.regions[structure]]
    by_name = {name: int(v) for v, name in manifest.labels.items()}
    if structure in by_name:
        return structure, [by_name[structure]]
    try:
        values = [int(v) for v in structure.split(",")]
    except ValueError:
        values = []
    if not values or any(v not in foreground for v in values):
        raise InputError(f"structure {structure!r} is neither a region, a label name nor foreground label values",
                         fix=f"regions: {', '.join(manifest.regions) or 'none'}; labels: "
                             f"{', '.join(f'{v}={n}' for v, n in manifest.labels.items() if v != '0')}")
    return structure, values


def _load(manifest: Manifest, values: list[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """case id -> (z-scored volume (C, X, Y, Z), structure mask (X, Y, Z))."""
    from medsight.datasets.loading import read_case_image, read_case_label
    from medsight.detection.slice_localisation import zscore_channels

    out = {}
    for case in manifest.cases:
        image = read_case_image(case, manifest)
        label = read_case_label(case, manifest, image)
        if label is None:
            raise InputError("case has no label to learn the structure from", path=case.images[0])
        out[case.id] = (zscore_channels(image.array), np.isin(label.array[0], values))
    return out


def localise(dataset_dir: str | Path, out_dir: str | Path, structure: str | None = None,
             folds: Sequence[int] | None = None, epochs: int = 8, side: int = 64, seed: int = 0,
             quiet: bool = False) -> dict:
    """Cross-validated slice-classification boxes of ``structure``; writes boxes.csv and localise.json."""
    from medsight.detection.slice_localisation import (axis_slices, mask_box, predict_box, slice_labels,
                                                       train_slice_classifier)
    from medsight.evaluation.detection import box_iou

    positive(epochs, "epochs", integer=True, minimum=1)
    positive(side, "side", integer=True, minimum=8)
    out = output_folder(out_dir)
    with one_writer(out, "this localisation folder", fix="wait for it to finish, or write into another folder with -o"):
        manifest = Manifest.load(dataset_dir)
        if manifest.task != "segmentation" or manifest.dims != 3:
            raise InputError(f"slice localisation needs 3D volumes with masks, this dataset is {manifest.dims}D "
                             f"{manifest.task}", path=dataset_dir)
        if not manifest.splits:
            raise InputError("the dataset has no folds", path=dataset_dir, fix="import it again with --folds N")
        folds = list(range(len(manifest.splits))) if folds is None else as_list(folds, "folds")
        unknown = [k for k in folds
                   if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(manifest.splits)]
        if unknown or not folds:
            raise InputError(f"no fold {unknown[0]!r} in this dataset" if unknown else "no folds to run",
                             path=dataset_dir,
                             fix=f"use fold numbers 0..{len(manifest.splits) - 1}")
        name, values = structure_values(manifest, structure)
        start = time.perf_counter()
        data = _load(manifest, values)
        # what a finished fold depends on: the dataset's manifest bytes and the settings
        parts = out / "parts" / settings_key([values, epochs, side, seed], Path(dataset_dir) / MANIFEST_NAME)
        rows, per_fold = [], []
        for k in folds:
            part = parts / f"fold_{k}.json"
            if part.is_file():  # finished by an earlier run of the same dataset and settings: kept
                stored = json.loads(part.read_text())
                rows += stored["cases"]
                per_fold.append(stored["fold"])
                if not quiet:
                    print(f"fold {k}: kept from {part}", flush=True)
                continue
            fold_rows = []
            train_ids, val_ids = manifest.splits[k]["train"], manifest.splits[k]["val"]
            t0 = time.perf_counter()
            slices = np.concatenate([axis_slices(data[c][0], a, side) for c in train_ids for a in range(3)])
            labels = np.concatenate([slice_labels(data[c][1], a) for c in train_ids for a in range(3)])
            model = train_slice_classifier(slices, labels, epochs=epochs, seed=seed + k)
            train_s = time.perf_counter() - t0
            for cid in val_ids:
                box, _ = predict_box(model, data[cid][0], side)
                truth = mask_box(data[cid][1])
                iou = float(box_iou(box[None], truth[None])[0, 0]) if truth is not None else None
                fold_rows.append({"case": cid, "fold": k, "box": box.tolist(),
                                  "true_box": truth.tolist() if truth is not None else None, "iou": iou,
                                  "face_error_voxels": (np.abs(box - truth).tolist() if truth is not None else None)})
                if not quiet:
                    print(f"fold {k} {cid}: box IoU {iou if iou is None else round(iou, 3)}", flush=True)
            fold_info = {"fold": k, "train_cases": len(train_ids), "train_slices": int(len(slices)),
                         "positive_slices": int(labels.sum()), "train_seconds": round(train_s, 1)}
            parts.mkdir(parents=True, exist_ok=True)
            atomic_write_text(part, json.dumps({"cases": fold_rows, "fold": fold_info}))
            rows += fold_rows
            per_fold.append(fold_info)
        ious = [r["iou"] for r in rows if r["iou"] is not None]
        result = {"structure": name, "label_values": values, "epochs": epochs, "side": side,
                  "mean_iou": float(np.mean(ious)) if ious else None,
                  "median_iou": float(np.median(ious)) if ious else None, "cases": rows, "folds": per_fold,
                  "seconds": round(time.perf_counter() - start, 1)}
        out.mkdir(parents=True, exist_ok=True)
        lines = ["case,fold,x0,y0,z0,x1,y1,z1,true_x0,true_y0,true_z0,true_x1,true_y1,true_z1,iou"]
        for r in rows:
            true = r["true_box"] or [""] * 6
            lines.append(",".join(map(str, [r["case"], r["fold"], *map(int, r["box"]), *[int(v) if v != "" else v for v in true],
                                            "" if r["iou"] is None else round(r["iou"], 4)])))
        atomic_write_text(out / "boxes.csv", "\n".join(lines) + "\n")
        atomic_write_text(out / "localise.json", json.dumps(result, indent=1))
        if not quiet:
            print(f"{name}: mean box IoU {result['mean_iou']} over {len(ious)} held-out case(s); {out / 'boxes.csv'}")
        return result
