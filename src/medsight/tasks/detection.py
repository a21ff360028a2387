"""Detection: a dense fully convolutional detector (centre heatmap + size + offset) post-processed into candidates.

Training sees whole images (or patches of large ones) with their boxes in network space (the cache maps
them there); targets are Gaussian centre heatmaps per class with dense size/offset regression
(:mod:`medsight.detection.targets`), the loss CenterNet's focal loss plus L1. Inference decodes the
heatmap's local maxima into boxes, applies per-class NMS and keeps every candidate above a low score.
``detections.csv`` holds the boxes in the original image's pixels with the class names of the data.
"""
from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from medsight.datasets.manifest import Manifest
from medsight.errors import InputError
from medsight.preprocessing.cache import CachedCases
from medsight.tasks.base import Task, write_csv

OUTPUT_STRIDE = 4
#: pixels (voxels) of one training patch and the batch size, by device kind and dims
PATCH_BUDGET = {("cpu", 2): (320 * 320, 8), ("cpu", 3): (64 ** 3, 2),
                ("cuda", 2): (768 * 768, 16), ("cuda", 3): (128 ** 3, 4)}
#: the smallest class's median box spans at least this many output cells (more on a GPU)
MEDIAN_CELLS = {"cpu": 5.0, "cuda": 10.0}
#: and its smallest box at least this many
MIN_CELLS = 2.0
BOOTSTRAP_SAMPLES = 1000


# -- planning rules ---------------------------------------------------------------------------------
def resolution_scale(object_size: dict, stride: int, device_kind: str = "cpu", spacing_ratio: float = 1.0) -> float:
    """Down-sampling factor (<= 1) that keeps the smallest class's objects big enough on the output grid.

    The smallest class's median box side must span ``MEDIAN_CELLS`` cells of ``stride`` pixels and its
    smallest box ``MIN_CELLS``; the factor is rounded to eighths (never below the second requirement).
    ``object_size`` is the fingerprint's (per class: median/min box sides in pixels of the files).
    """
    if not object_size:
        return 1.0
    smallest_median = min(min(v["median"]) for v in object_size.values()) * spacing_ratio
    smallest = min(min(v["min"]) for v in object_size.values()) * spacing_ratio
    floor = MIN_CELLS * stride / max(smallest, 1e-6)
    need = max(floor, MEDIAN_CELLS[device_kind] * stride / max(smallest_median, 1e-6))
    return float(min(1.0, max(round(need * 8) / 8, floor)))


def class_values(plan: dict) -> list[int]:
    """Class values in order; heatmap channel k is the k-th value."""
    return sorted(int(v) for v in plan["labels"] if int(v) != 0)


def coordinate_names(nd: int) -> list[str]:
    """``x0, y0, x1, y1`` (2D) or ``x0, y0, z0, x1, y1, z1`` (3D)."""
    axes = "xyz"[:nd]
    return [f"{a}0" for a in axes] + [f"{a}1" for a in axes]


def box_axes(nd: int) -> list[int]:
    """Array axis of each box coordinate: 2D boxes are (x = column, y = row), 3D boxes follow the array."""
    return [1, 0] if nd == 2 else [0, 1, 2]


class DetectionTask(Task):
    """CenterNet-style dense detection: EfficientNet-Lite0 + pyramid decoder for RGB 2D, the U-Net otherwise."""

    name = "detection"
    default_budget_minutes = {2: 30.0, 3: 45.0}
    predict_chunk = 16

    # -- planning ---------------------------------------------------------------------------------
    def plan_rules(self, manifest: Manifest, fingerprint: dict, device: torch.device,
                   budget_minutes: float | None = None, measure: bool = True) -> dict:
        """Resolution from object sizes, patch (or whole image), network, loss, sampler, augmentation."""
        from medsight.planning.plan import normalization_rule, target_spacing_rule

        nd, kind = manifest.dims, ("cuda" if device.type == "cuda" else "cpu")
        n_classes = len([v for v in manifest.labels if int(v) != 0])
        channels = int(fingerprint["num_channels"])
        median_spacing = np.asarray(fingerprint["median_spacing"], float)
        common = target_spacing_rule(np.asarray(fingerprint["spacings"], float),
                                     np.asarray(fingerprint["shapes"], float))
        base = np.asarray(common if common is not None else median_spacing, float)
        scale = resolution_scale(fingerprint.get("object_size", {}), OUTPUT_STRIDE, kind,
                                 spacing_ratio=float(np.min(median_spacing / base)))
        target_spacing = base / scale
        network_shape = np.asarray(fingerprint["median_shape"], float) * median_spacing / target_spacing
        max_pixels, batch = PATCH_BUDGET[(kind, nd)]
        rgb = nd == 2 and channels == 3
        whole = float(np.prod(network_shape)) <= max_pixels
        if whole:
            patch_guess = [float(s) for s in network_shape]
        else:
            from medsight.tasks.segmentation import patch_size_rule

            patch_guess = [float(s) for s in patch_size_rule(list(network_shape), list(target_spacing), max_pixels, 1)]
        net, stride, divisor = network_rule(nd, channels, n_classes, patch_guess, list(target_spacing), kind)
        patch = [int(math.ceil(s / d) * d) for s, d in zip(patch_guess, divisor)]
        plan = {
            "target_spacing": [float(s) for s in target_spacing] if scale < 1.0 or common is not None else None,
            "resolution_scale": scale,
            "patch_size": patch, "whole_image": bool(whole), "batch_size": batch,
            "network": net,
            "loss": {"name": "centernet", "size_weight": 1.0, "offset_weight": 1.0},
            "detection": {"stride": stride, "gaussian_alpha": 0.54, "min_sigma": 0.5, "pool_kernel": 3,
                          "max_detections": 300, "score_threshold": 0.01, "nms_iou": 0.6},
            "sampler": {"selective": False, "uniform_share": 0.5, "momentum": 0.0, "box_patch": 0.5},
            "augmentation": {"scale": [0.8, 1.25], "mirror_axes": list(range(nd)),
                             "colour": ({"brightness": 0.2, "contrast": [0.8, 1.2], "channel_shift": 0.1,
                                         "saturation": [0.7, 1.3]} if rgb else
                                        {"brightness": 0.1, "contrast": [0.85, 1.15]})},
            "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine", "warmup_steps": 50},
            "inference": {"batch_size": 8, "mirror_axes": list(range(nd)), "overlap": 0.5},
            "validation": {"every": 2, "max_cases": 40, "fraction_of_time": 0.1},
            "channels_last": nd == 2,
        }
        if rgb:
            plan["optimizer"]["backbone_lr_factor"] = 0.5
            plan["normalization"] = [{"scheme": "rgb", "scale": 255.0, "mean": m, "std": s}
                                     for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
        else:
            plan["normalization"] = normalization_rule(manifest, fingerprint)
        return plan

    def steps_per_epoch(self, plan: dict, num_train_cases: int) -> int:
        """One pass over the training images (whole images), at least 50 batches for patches."""
        passes = max(1, math.ceil(num_train_cases / int(plan["batch_size"])))
        return passes if plan.get("whole_image", True) else max(50, passes)

    # -- training ---------------------------------------------------------------------------------
    def build_network(self, plan: dict) -> nn.Module:
        """The plan's dense detector (``centernet`` in the model registry)."""
        import medsight.nets.centernet  # noqa: F401  (registers "centernet")
        from medsight.nets import create_model

        cfg = dict(plan["network"])
        model = create_model(cfg.pop("name"), **cfg)
        if list(getattr(model, "stride", plan["detection"]["stride"])) != list(plan["detection"]["stride"]):
            raise InputError(f"the network's output stride {model.stride} differs from the plan's "
                             f"detection.stride {plan['detection']['stride']}", fix="plan again")
        return model

    def build_loss(self, plan: dict) -> nn.Module:
        """Focal loss on the centre heatmaps plus L1 on log size and offset."""
        from medsight.detection.loss import CenterNetLoss

        cfg = {k: v for k, v in plan["loss"].items() if k != "name"}
        return CenterNetLoss(len(class_values(plan)), int(plan["dims"]), **cfg)

    def _train_items(self, data: CachedCases, plan: dict) -> list[tuple]:
        """(image, lo, hi, class indices) of every case of ``data``; 2D images are held in memory."""
        cached = getattr(data, "_detection_items", None)
        if cached is None:
            values = class_values(plan)
            cached = []
            for cid in data.ids:
                image = data.image(cid, mmap=int(plan["dims"]) == 3)
                boxes = data.props(cid).get("boxes", [])
                lo = np.array([b["lo"] for b in boxes], np.float64).reshape(-1, int(plan["dims"]))
                hi = np.array([b["hi"] for b in boxes], np.float64).reshape(-1, int(plan["dims"]))
                labels = np.array([values.index(int(b["label"])) for b in boxes], np.int64)
                cached.append((image, lo, hi, labels))
            data._detection_items = cached  # type: ignore[attr-defined]
        return cached

    def _render(self, lo: np.ndarray, hi: np.ndarray, labels: np.ndarray, spatial: list[int], plan: dict) -> dict:
        from medsight.detection.targets import grid_shape, render_targets

        det = plan["detection"]
        return render_targets(lo, hi, labels, grid_shape(spatial, det["stride"]), det["stride"],
                              len(class_values(plan)), alpha=float(det.get("gaussian_alpha", 0.54)),
                              min_sigma=float(det.get("min_sigma", 0.5)))

    @staticmethod
    def _collate(targets: list[dict], indices: list[int]) -> dict:
        out = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
        out["index"] = torch.as_tensor(indices, dtype=torch.long)
        return out

    def training_batches(self, data: CachedCases, plan: dict, epoch_seed: tuple[int, ...], steps: int,
                         rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, dict]]:
        """Augmented patches and rendered targets; sample j of step s has its own generator; rank r takes
        samples r::world. With ``sampler.selective`` images are drawn by their last loss (see
        :mod:`medsight.detection.selective`)."""
        from medsight.detection.augment import sample_patch

        items = self._train_items(data, plan)
        bs, patch = int(plan["batch_size"]), [int(p) for p in plan["patch_size"]]
        samp = plan.get("sampler", {})
        rng = np.random.default_rng(list(epoch_seed))
        state = self._selective_state(data, plan) if samp.get("selective") else None
        epoch = int(epoch_seed[-1])
        if state is not None:
            order = state.draw(epoch, steps * bs, rng, world)
        else:
            order = rng.permutation(len(items))
            while len(order) < steps * bs:
                order = np.concatenate([order, rng.permutation(len(items))])
        seen: list[tuple[list[int], dict]] = []
        for s in range(steps):
            xs, targets, picked = [], [], []
            for j in range(rank, bs, world):
                r = np.random.default_rng([*epoch_seed, s, j])
                index = int(order[s * bs + j])
                image, lo, hi, labels = items[index]
                focus = None
                if not plan.get("whole_image", True) and len(lo) and r.random() < float(samp.get("box_patch", 0.5)):
                    focus = int(r.integers(len(lo)))
                x, lo2, hi2, lab2 = sample_patch(np.asarray(image), lo, hi, labels, patch, plan.get("augmentation", {}),
                                                 r, focus_box=focus)
                xs.append(x)
                targets.append(self._render(lo2, hi2, lab2, patch, plan))
                picked.append(index)
            target = self._collate(targets, picked)
            yield torch.stack(xs), target
            seen.append((picked, target))
        if state is not None:
            idx = [i for p, t in seen if "image_losses" in t for i in p]
            losses = [float(v) for _, t in seen if "image_losses" in t for v in t["image_losses"]]
            state.record(epoch, idx, losses, rank, world)

    def _selective_state(self, data: CachedCases, plan: dict):
        from medsight.detection.selective import SelectiveState, run_key

        samp = plan.get("sampler", {})
        return SelectiveState(data.folder / "selective_sampling", run_key(plan, data.ids), len(data.ids),
                              uniform_share=float(samp.get("uniform_share", 0.5)),
                              momentum=float(samp.get("momentum", 0.0)))

    def example_batch(self, plan: dict) -> tuple[torch.Tensor, dict]:
        """A batch of the plan's patch size with a few random boxes per image (to time a step)."""
        rng = np.random.default_rng(0)
        b, c = int(plan["batch_size"]), int(plan["network"].get("in_channels", 3))
        patch = [int(p) for p in plan["patch_size"]]
        targets = []
        for _ in range(b):
            lo = rng.uniform(0, 0.8, size=(8, len(patch))) * patch
            hi = lo + rng.uniform(0.05, 0.2, size=(8, len(patch))) * patch
            targets.append(self._render(lo, hi, rng.integers(0, len(class_values(plan)), 8), patch, plan))
        return torch.randn(b, c, *patch), self._collate(targets, list(range(b)))

    # -- inference --------------------------------------------------------------------------------
    @torch.inference_mode()
    def _dense_maps(self, models: list[nn.Module], x: torch.Tensor, plan: dict) -> tuple[torch.Tensor, ...]:
        """Heatmap probabilities, log sizes and offsets of a batch, averaged over models and every
        combination of the planned mirror axes (heatmaps and sizes; offsets from the unmirrored pass,
        as CenterNet does)."""
        k, nd = len(class_values(plan)), int(plan["dims"])
        heat, size, offset, n = 0.0, 0.0, 0.0, 0
        axes_to_mirror = [2 + a for a in plan.get("inference", {}).get("mirror_axes", [])]
        mirror_sets = [c for r in range(len(axes_to_mirror) + 1) for c in itertools.combinations(axes_to_mirror, r)]
        for m in models:
            m.eval()
            for axes in mirror_sets:
                xi = torch.flip(x, axes) if axes else x
                if plan.get("channels_last") and xi.dim() == 4:
                    xi = xi.contiguous(memory_format=torch.channels_last)
                out = m(xi).float()
                out = torch.flip(out, axes) if axes else out
                heat = heat + torch.sigmoid(out[:, :k])
                size = size + out[:, k:k + nd]
                if not axes:
                    offset = offset + out[:, k + nd:]
                n += 1
        return heat / n, size / n, offset / len(models)

    @torch.inference_mode()
    def _windowed_maps(self, models: list[nn.Module], image: np.ndarray, plan: dict,
                       device: torch.device) -> tuple[torch.Tensor, ...]:
        """Dense maps (1, ., *cells) of one image larger than the training patch, window by window.

        Windows of the patch size (as in training, so instance norm sees patch-sized statistics) are placed
        as the foundation's sliding window places them (overlap ``inference.overlap``), with corners moved
        onto the output stride so that each window's cells fall on the image's cell grid; the maps are
        blended with the foundation's Gaussian weights at cell resolution (small: one value per cell).
        """
        from medsight.inference.sliding_window import gaussian_importance_map, window_positions

        stride = [int(v) for v in plan["detection"]["stride"]]
        roi = [int(v) for v in plan["patch_size"]]
        spatial = list(image.shape[1:])
        padded = [max(r, -(-s // st) * st) for s, r, st in zip(spatial, roi, stride)]
        x = np.zeros((image.shape[0], *padded), np.float32)
        x[(slice(None), *[slice(0, s) for s in spatial])] = image
        corners = sorted({tuple(min(c // st * st, p - r) for c, st, p, r in zip(corner, stride, padded, roi))
                          for corner in window_positions(padded, roi, float(plan["inference"].get("overlap", 0.5)))})
        roi_cells = [r // st for r, st in zip(roi, stride)]
        weights = gaussian_importance_map(roi_cells).to(device)
        cells = [p // st for p, st in zip(padded, stride)]
        k, nd = len(class_values(plan)), int(plan["dims"])
        total = torch.zeros(k + 2 * nd, *cells, device=device)
        weight_sum = torch.zeros(*cells, device=device)
        batch = max(1, int(plan.get("inference", {}).get("batch_size", 8)))
        for start in range(0, len(corners), batch):
            group = corners[start:start + batch]
            windows = np.stack([x[(slice(None), *[slice(c, c + r) for c, r in zip(corner, roi)])] for corner in group])
            heat, size, offset = self._dense_maps(models, torch.from_numpy(windows).to(device), plan)
            maps = torch.cat([heat, size, offset], 1)
            for corner, m in zip(group, maps):
                where = tuple(slice(c // st, c // st + rc) for c, st, rc in zip(corner, stride, roi_cells))
                total[(slice(None), *where)] += m[(slice(None), *[slice(0, rc) for rc in roi_cells])] * weights
                weight_sum[where] += weights
        keep = tuple(slice(0, -(-s // st)) for s, st in zip(spatial, stride))
        out = (total / weight_sum)[(slice(None), *keep)][None]
        return out[:, :k], out[:, k:k + nd], out[:, k + nd:]

    def _uses_windows(self, array: np.ndarray, plan: dict) -> bool:
        """Patch-trained plans predict images larger than the patch by sliding windows."""
        return (not plan.get("whole_image", True)
                and any(s > p for s, p in zip(array.shape[1:], plan["patch_size"])))

    def predict_cases(self, models: list[nn.Module], arrays: list[np.ndarray], plan: dict,
                      device: torch.device) -> list:
        """Candidates of several preprocessed images (same-shape images batched; images larger than a
        training patch of a patch-trained plan by sliding windows)."""
        from medsight.detection.decode import decode_maps, nms_per_class

        det = plan["detection"]
        batch = max(1, int(plan.get("inference", {}).get("batch_size", 8)))
        results: list = [None] * len(arrays)

        def decode(heat, size, offset) -> dict:
            cand = decode_maps(heat, size, offset, det["stride"], max_candidates=int(det.get("max_detections", 300)),
                               score_threshold=float(det.get("score_threshold", 0.01)),
                               kernel=int(det.get("pool_kernel", 3)), keep_best=True)
            return nms_per_class(cand, float(det.get("nms_iou", 0.6)))

        by_shape: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            if self._uses_windows(a, plan):
                heat, size, offset = self._windowed_maps(models, a, plan, device)
                results[i] = decode(heat[0], size[0], offset[0])
            else:
                by_shape.setdefault(tuple(a.shape), []).append(i)
        for group in by_shape.values():
            for start in range(0, len(group), batch):
                idx = group[start:start + batch]
                x = torch.from_numpy(np.ascontiguousarray(np.stack([arrays[i] for i in idx]))).float().to(device)
                heat, size, offset = self._dense_maps(models, x, plan)
                for b, i in enumerate(idx):
                    results[i] = decode(heat[b], size[b], offset[b])
        return results

    def predict_case(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device) -> dict:
        """Network-space candidates of one image: ``boxes`` (N, 2 nd, lo then hi per array axis), ``scores``,
        ``classes`` (indices into the class values), best first; at least the best peak is kept."""
        return self.predict_cases(models, [array], plan, device)[0]

    def write_case(self, result: dict, out_dir: Path, plan: dict, decisions: dict) -> list[dict]:
        """The case's rows of ``detections.csv``, boxes in the original image's pixels (x = column)."""
        pred, props = result["prediction"], result["props"]
        nd = int(plan["dims"])
        lo, hi = network_to_original(pred["boxes"][:, :nd], pred["boxes"][:, nd:], props)
        values = class_values(plan)
        names = coordinate_names(nd)
        axes = box_axes(nd)
        rows = []
        for n in range(len(pred["scores"])):
            row = {"case": result["case"], "label": plan["labels"][str(values[int(pred["classes"][n])])],
                   "score": float(f"{float(pred['scores'][n]):.6g}")}
            for a in range(nd):
                row[names[a]] = round(float(lo[n, axes[a]]), 2)
                row[names[nd + a]] = round(float(hi[n, axes[a]]), 2)
            rows.append(row)
        return rows

    def write_summary(self, rows: list[dict], out_dir: Path, plan: dict, decisions: dict) -> list[Path]:
        """``detections.csv``: case, label (class name), score, box corners in original pixels."""
        fields = ["case", "label", "score", *coordinate_names(int(plan["dims"]))]
        return [write_csv(Path(out_dir) / "detections.csv", rows, fields)]

    # -- validation -------------------------------------------------------------------------------
    def _network_space_ap(self, models: list[nn.Module], data: CachedCases, ids: list[str], plan: dict,
                          device: torch.device) -> dict:
        """Per-class AP@0.5 of ``ids`` in network space (IoU does not change with the resampling), without the
        test-time mirroring unless ``validation.mirror`` asks for it."""
        from medsight.evaluation.detection import detection_metrics

        if not plan.get("validation", {}).get("mirror", False):
            plan = {**plan, "inference": {**plan.get("inference", {}), "mirror_axes": []}}
        values = class_values(plan)
        names = [plan["labels"][str(v)] for v in values]
        preds = self.predict_cases(models, [data.image(i, mmap=False) for i in ids], plan, device)
        dets, gts = [], []
        for cid, p in zip(ids, preds):
            boxes = data.props(cid).get("boxes", [])
            nd = int(plan["dims"])
            gt = np.array([[*b["lo"], *b["hi"]] for b in boxes], float).reshape(-1, 2 * nd)
            gts.append((gt, np.array([values.index(int(b["label"])) for b in boxes], np.int64)))
            dets.append((p["boxes"], p["scores"], p["classes"]))
        return detection_metrics(dets, gts, names)

    def validate(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device) -> dict[str, float]:
        """VOC mAP@0.5 (network space) on up to ``validation.max_cases`` validation images; score = mAP@0.5."""
        limit = int(plan.get("validation", {}).get("max_cases", 40))
        m = self._network_space_ap([model], data, list(data.ids)[:limit], plan, device)
        model.train()
        out = {"score": m["mean"]["ap50"] if m["mean"]["ap50"] is not None else 0.0,
               "map50": m["mean"]["ap50"] or 0.0}
        out.update({f"ap50_{k}": v["ap50"] for k, v in m.items() if k != "mean" and v["ap50"] is not None})
        return out

    def finalize(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device, fold_dir: Path,
                 companions: dict | None = None) -> dict:
        """Record the final model's mAP@0.5 on every validation image (network space, as ``validate``
        computes it) in decisions.json."""
        if not len(data):
            return {}
        m = self._network_space_ap([model], data, list(data.ids), plan, device)
        return {"validation_map50": m["mean"]["ap50"],
                "validation_ap50": {k: v["ap50"] for k, v in m.items() if k != "mean"},
                "validation_mirrored": bool(plan.get("validation", {}).get("mirror", False))}

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, out_dir: Path, manifest: Manifest, case_ids: list[str] | None = None) -> dict:
        """Per class VOC AP@0.5, COCO mAP@0.5:0.95, FROC/CPM with bootstrap 95% intervals over images."""
        from medsight.detection.metrics import detection_report

        path = Path(out_dir) / "detections.csv"
        if not path.is_file():
            raise InputError("no detections.csv here", path=out_dir, fix="run `medsight predict` first")
        names = [manifest.labels[str(v)] for v in manifest.label_values if v != 0]
        rows = read_detections(path, manifest.dims, class_names=names)
        by_id = manifest.case_by_id
        predicted = {r["case"] for r in rows}
        if case_ids is not None:
            unknown = [c for c in case_ids if c not in by_id]
            if unknown:
                raise InputError(f"case {unknown[0]!r} is not in the reference dataset", path=path)
            cases = list(case_ids)
        else:
            cases = [c.id for c in manifest.cases if c.id in predicted]
        if not cases:
            raise InputError("no predicted case is in the reference dataset", path=path,
                             fix="predict the dataset's cases first (case = file name without extension)")
        dets: dict[str, list[dict]] = {c: [] for c in cases}
        for r in rows:
            if r["case"] in dets:
                dets[r["case"]].append(r)
        det_list, gt_list = [], []
        for c in cases:
            d = dets[c]
            det_list.append((np.array([r["box"] for r in d], float).reshape(-1, 2 * manifest.dims),
                             np.array([r["score"] for r in d], float),
                             np.array([r["label"] for r in d], dtype=object)))
            boxes = by_id[c].boxes
            gt_list.append((np.array([b["box"] for b in boxes], float).reshape(-1, 2 * manifest.dims),
                            np.array([manifest.labels[str(int(b["label"]))] for b in boxes], dtype=object)))
        report = detection_report(det_list, gt_list, names, n_boot=BOOTSTRAP_SAMPLES)
        report["per_case"] = [{"case": c, "n_gt": int(len(g[0])), "n_detections": int(len(d[1]))}
                              for c, d, g in zip(cases, det_list, gt_list)]
        return {"task": "detection", "num_cases": len(cases), **report}


def network_rule(nd: int, channels: int, n_classes: int, patch: list[float], spacing: list[float],
                 device_kind: str) -> tuple[dict, list[int], list[int]]:
    """(network entry, output stride, input-size divisor): the ImageNet EfficientNet-Lite0 encoder for RGB 2D
    (its first units frozen on a CPU), else the foundation's U-Net sized for ``patch`` at ``spacing``."""
    if nd == 2 and channels == 3:
        net = {"name": "centernet", "encoder": "efficientnet_lite0", "pretrained": True, "spatial_dims": 2,
               "in_channels": 3, "num_classes": n_classes, "decoder_channels": 64, "head_channels": 32,
               "frozen_units": 0 if device_kind == "cuda" else 6}
        return net, [OUTPUT_STRIDE] * 2, [OUTPUT_STRIDE] * 2
    from medsight.nets.unet import plan_unet, unet_divisor

    topo = plan_unet([int(math.ceil(s)) for s in patch], spacing, base_features=32 if device_kind == "cuda" else 16,
                     max_features=256)
    net = {"name": "centernet", "encoder": "unet", "spatial_dims": nd, "in_channels": channels,
           "num_classes": n_classes, "output_stride": OUTPUT_STRIDE, "head_channels": 32, **topo}
    return net, _unet_output_stride(topo["strides"], OUTPUT_STRIDE), unet_divisor(topo["strides"])


def _unet_output_stride(strides: list[list[int]], output_stride: int) -> list[int]:
    """Per-axis stride of the first U-Net level whose stride is at most ``output_stride`` on every axis."""
    cumulative = [[math.prod(s[a] for s in strides[: i + 1]) for a in range(len(strides[0]))]
                  for i in range(len(strides))]
    return max((c for c in cumulative if max(c) <= output_stride), key=lambda c: math.prod(c))


def network_to_original(lo: np.ndarray, hi: np.ndarray, props: dict) -> tuple[np.ndarray, np.ndarray]:
    """Box corners (N, nd, array axes) from network space to the original image's pixels, clipped to it:
    the inverse of the cache's mapping (undo the resampling, add the crop offset)."""
    scale = np.asarray(props["network_shape"], float) / np.asarray(props["cropped_shape"], float)
    start = np.asarray([b[0] for b in props["bbox"]], float)
    full = np.asarray(props["original_shape"], float)
    lo = np.clip(np.asarray(lo, float) / scale + start, 0, full)
    hi = np.clip(np.asarray(hi, float) / scale + start, 0, full)
    return lo, hi


def read_detections(path: Path, nd: int, class_names: list[str] | None = None) -> list[dict]:
    """Rows of a ``detections.csv`` as dicts with ``case``, ``label``, ``score`` and ``box`` (x0, y0, ..., x1, ...).

    Refuses, naming the line, a score or coordinate that is not a finite number, a box whose far corner lies
    before its near one, and (given ``class_names``) a label that is not one of them.
    """
    names = coordinate_names(nd)
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("case", "label", "score", *names) if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"detections.csv lacks the columns {', '.join(missing)}", path=path,
                             fix=f"write case, label, score, {', '.join(names)}")
        for line, r in enumerate(reader, start=2):
            try:
                row = {"case": r["case"], "label": r["label"], "score": float(r["score"]),
                       "box": [float(r[c]) for c in names]}
            except (TypeError, ValueError):
                raise InputError(f"line {line} has a score or coordinate that is not a number", path=path) from None
            if not np.isfinite([row["score"], *row["box"]]).all():
                raise InputError(f"line {line} has a score or coordinate that is NaN or infinite", path=path)
            if any(row["box"][nd + a] < row["box"][a] for a in range(nd)):
                raise InputError(f"line {line}: the box {row['box']} ends before it starts "
                                 f"({', '.join(names[nd:])} must not be below {', '.join(names[:nd])})", path=path)
            if class_names is not None and row["label"] not in class_names:
                raise InputError(f"line {line}: unknown class {row['label']!r}", path=path,
                                 fix=f"use one of {class_names}")
            out.append(row)
    return out
