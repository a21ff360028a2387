"""``medsight weak DATASET_DIR --positive-class NAME``: localisation from image labels only, scored on boxes.

The image label is whether an image holds an object of the class (derived from a detection dataset's
boxes, which training never sees otherwise). A :class:`~medsight.detection.weak.CamLocaliser` learns it on
fold 0's training images; on the validation images its class-activation map's local maxima are the
candidate points. Scored against the real boxes: image AUC, FROC and CPM with a hit when a point lies in a
box of the class (LUNA16-style centre hits; duplicates on a found object are ignored), and how often the
best point of a positive image hits. Outputs in OUT_DIR: ``weak.json`` and ``detections.csv``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from medsight.datasets.manifest import Manifest, atomic_write_text
from medsight.errors import InputError, output_folder, positive
from medsight.locks import one_writer


def _images_and_boxes(manifest: Manifest, positive: int, downsample: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images (N, 3, H, W) in 0-255 at 1/downsample, and each image's boxes of the positive class (same scale)."""
    import torch
    import torch.nn.functional as F

    from medsight.datasets.loading import read_case_image

    images, boxes, shape0 = [], [], None
    for case in manifest.cases:
        image = read_case_image(case).array.astype(np.float32)
        if image.shape[0] == 1:
            image = np.repeat(image, 3, axis=0)
        if image.shape[0] != 3:
            raise InputError(f"weak localisation reads RGB or grey images, this one has {image.shape[0]} channels",
                             path=case.images[0])
        if downsample > 1:
            t = torch.from_numpy(image)[None]
            image = F.interpolate(t, scale_factor=1 / downsample, mode="bilinear", antialias=True,
                                  align_corners=False)[0].numpy()
        if shape0 is None:
            shape0 = image.shape
        if image.shape != shape0:
            raise InputError(f"image of shape {image.shape[1:]} but the first was {shape0[1:]}: one size is needed",
                             path=case.images[0])
        images.append(image)
        own = [b["box"][:4] for b in case.boxes if int(b["label"]) == positive]
        boxes.append(np.asarray(own, float).reshape(-1, 4) / downsample)
    return np.stack(images), boxes


def weak_localise(dataset_dir: str | Path, out_dir: str | Path, positive_class: str, epochs: int = 12,
                  downsample: int = 1, seed: int = 0, quiet: bool = False) -> dict:
    """Train on image labels of fold 0, localise on its validation images, score against the boxes."""
    from medsight.detection.weak import map_peaks, points_to_boxes, predict_maps, train_cam_localiser
    from medsight.evaluation.classification import roc_auc
    from medsight.evaluation.detection import froc

    if downsample < 1:
        raise InputError(f"downsample must be at least 1, got {downsample}")
    positive(epochs, "epochs", integer=True, minimum=1)
    out = output_folder(out_dir)
    with one_writer(out, "this localisation folder", fix="wait for it to finish, or write into another folder with -o"):
        manifest = Manifest.load(dataset_dir)
        if manifest.task != "detection" or manifest.dims != 2 or not manifest.splits:
            raise InputError("weak localisation needs a 2D detection dataset with a train/validation split",
                             path=dataset_dir)
        positive_value = manifest.box_class_value(positive_class, "a negative", dataset_dir)
        start = time.perf_counter()
        images, boxes = _images_and_boxes(manifest, positive_value, downsample)
        labels = np.array([int(len(b) > 0) for b in boxes])
        where = {c.id: i for i, c in enumerate(manifest.cases)}
        train = np.array([where[c] for c in manifest.splits[0]["train"]])
        val = np.array([where[c] for c in manifest.splits[0]["val"]])
        t0 = time.perf_counter()
        model = train_cam_localiser(images[train], labels[train], epochs=epochs, seed=seed)
        train_s = time.perf_counter() - t0
        probs, maps = predict_maps(model, images[val])
        detections, rows = [], []
        for i, (cam, p) in enumerate(zip(maps, probs)):
            points, scores = map_peaks(cam, model.stride)
            scores = scores * p  # an image the classifier calls negative ranks its points lower
            detections.append((points_to_boxes(points, 8.0), scores))
            cid = manifest.cases[val[i]].id
            rows += [f"{cid},{positive_class},{x * downsample:.1f},{y * downsample:.1f},{s:.5f}"
                     for (x, y), s in zip(points, scores)]
        truth = [boxes[i] for i in val]
        curve = froc(detections, truth, match="center")
        positive_val = [k for k, i in enumerate(val) if labels[i]]
        top_hits = [_inside(detections[k][0][:1], truth[k]) for k in positive_val if len(detections[k][0])]
        result = {"positive_class": positive_class, "train_images": int(len(train)), "val_images": int(len(val)),
                  "positive_train_images": int(labels[train].sum()), "positive_val_images": int(labels[val].sum()),
                  "val_objects": int(sum(len(t) for t in truth)), "epochs": epochs, "downsample": downsample,
                  "image_auc": float(roc_auc(labels[val], probs)) if 0 < labels[val].sum() < len(val) else None,
                  "cpm": curve["cpm"], "sensitivity_at": {str(k): v for k, v in zip(curve.get("fp_rates", []),
                                                                                     curve.get("sensitivities", []))},
                  "top_point_hit_rate": float(np.mean(top_hits)) if top_hits else None,
                  "hit": "point inside a box of the class", "train_seconds": round(train_s, 1),
                  "seconds": round(time.perf_counter() - start, 1)}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "detections.csv", "case,class,x,y,score\n" + "\n".join(rows) + "\n")
        atomic_write_text(out / "weak.json", json.dumps(result, indent=1))
        if not quiet:
            print(f"weak '{positive_class}': image AUC {result['image_auc']}, CPM {result['cpm']}, best point hits in "
                  f"{result['top_point_hit_rate']} of positive images ({result['train_seconds']} s training)", flush=True)
        return result


def _inside(point_boxes: np.ndarray, truth: np.ndarray) -> bool:
    """Whether the centre of the first box lies in any of ``truth``."""
    if not len(point_boxes) or not len(truth):
        return False
    cx, cy = (point_boxes[0, :2] + point_boxes[0, 2:]) / 2
    return bool(np.any((truth[:, 0] <= cx) & (cx <= truth[:, 2]) & (truth[:, 1] <= cy) & (cy <= truth[:, 3])))
