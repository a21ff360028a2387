"""Exam classification: one image (2D or 3D) in, one diagnosis out."""
from __future__ import annotations

import csv
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
from medsight.tasks.batch_augment import random_affine_batch


def class_values(plan: dict) -> list[int]:
    """Label values in order; the network's output k is the k-th value."""
    return sorted(int(v) for v in plan["labels"])


def label_token(plan: dict, value: int) -> str:
    """How a class is written in outputs: its name when the data named it, else its value."""
    return plan["labels"][str(value)] if plan.get("label_column") == "name" else str(value)


class ClassificationTask(Task):
    """CNN classifiers (ResNet 2D/3D from scratch, or ImageNet EfficientNet-Lite0 fine-tuned)."""

    name = "classification"
    default_budget_minutes = {2: 5.0, 3: 15.0}

    # -- planning ---------------------------------------------------------------------------------
    def plan_rules(self, manifest: Manifest, fingerprint: dict, device: torch.device) -> dict:
        """Input size, network, batch size and augmentation from the image size and channels."""
        median = [int(round(s)) for s in fingerprint["median_shape"]]
        nd = manifest.dims
        n_classes = len(manifest.labels)
        small = max(median) <= 64
        gpu = device.type == "cuda"
        if small:
            input_size = median
            net = {"name": "resnet18", "spatial_dims": nd, "in_channels": fingerprint["num_channels"],
                   "num_classes": n_classes, "stem": "small",
                   # a CPU step of the full-width ResNet-18 on 28^2 takes seconds; half width is ~4x cheaper
                   "widths": [64, 128, 256, 512] if gpu else ([32, 64, 128, 256] if nd == 2 else [16, 32, 64, 128])}
            batch = 128 if nd == 2 else 32
            lr = 1e-3
        elif nd == 2 and fingerprint["num_channels"] == 3:
            side = 224 if gpu else 128
            input_size = [side, side]
            net = {"name": "efficientnet_lite0", "num_classes": n_classes, "pretrained": True}
            batch = 32
            lr = 1e-3
        else:
            side = (224 if gpu else 128) if nd == 2 else (96 if gpu else 64)
            input_size = [side] * nd
            net = {"name": "resnet18", "spatial_dims": nd, "in_channels": fingerprint["num_channels"],
                   "num_classes": n_classes, "stem": "imagenet"}
            batch = 32 if nd == 2 else 8
            lr = 1e-3
        aug = ({"rotation": [-0.26, 0.26], "scale": [0.9, 1.1], "translate": 0.05, "mirror_axes": [1]}
               if nd == 2 else {"mirror_axes": [0, 1, 2]})
        plan = {"input_size": input_size, "network": net, "batch_size": batch,
                "loss": {"name": "ce", "label_smoothing": 0.0},
                "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 1e-4, "schedule": "cosine",
                              "warmup_steps": 0},
                "augmentation": aug, "channels_last": nd == 2,
                "label_column": manifest.extra.get("label_column", "value"), "ordinal": manifest.ordinal,
                "validation": {"every": 1, "fraction_of_time": 0.1}}
        if net["name"] == "efficientnet_lite0":
            plan["optimizer"]["backbone_lr_factor"] = 0.1
            plan["normalization"] = [{"scheme": "rgb", "scale": 255.0, "mean": m, "std": s}
                                     for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
        return plan

    def steps_per_epoch(self, plan: dict, num_train_cases: int) -> int:
        """One pass over the training cases."""
        return max(1, math.ceil(num_train_cases / int(plan["batch_size"])))

    # -- training ---------------------------------------------------------------------------------
    def build_network(self, plan: dict) -> nn.Module:
        """ResNet or EfficientNet from the plan's network entry."""
        from medsight.nets import create_model

        cfg = dict(plan["network"])
        return create_model(cfg.pop("name"), **cfg)

    def build_loss(self, plan: dict) -> nn.Module:
        """Cross-entropy over class indices."""
        return nn.CrossEntropyLoss(label_smoothing=float(plan["loss"].get("label_smoothing", 0.0)))

    def _arrays(self, data: CachedCases, plan: dict) -> tuple[np.ndarray, np.ndarray]:
        """All images of ``data`` in memory (classification sets are small) and their class indices."""
        cached = getattr(data, "_stacked", None)
        if cached is None:
            values = class_values(plan)
            x = np.stack([data.image(i, mmap=False) for i in data.ids]).astype(np.float32)
            y = np.array([values.index(int(data.props(i)["target"])) for i in data.ids], dtype=np.int64)
            cached = data._stacked = (x, y)  # type: ignore[attr-defined]
        return cached

    def training_batches(self, data: CachedCases, plan: dict, epoch_seed: tuple[int, ...], steps: int,
                         rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled passes over the training set; sample i of step s is augmented with its own generator."""
        x, y = self._arrays(data, plan)
        bs = int(plan["batch_size"])
        rng = np.random.default_rng(list(epoch_seed))
        order = rng.permutation(len(x))
        while len(order) < steps * bs:
            order = np.concatenate([order, rng.permutation(len(x))])
        for s in range(steps):
            idx = order[s * bs:(s + 1) * bs][rank::world]
            rngs = [np.random.default_rng([*epoch_seed, s, j]) for j in range(rank, bs, world)][:len(idx)]
            xb = random_affine_batch(torch.from_numpy(x[idx]), rngs, plan.get("augmentation", {}))
            yield xb, torch.from_numpy(y[idx])

    def example_batch(self, plan: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Random batch of the plan's input size."""
        c = plan["network"].get("in_channels", 3)
        x = torch.randn(int(plan["batch_size"]), c, *plan["input_size"])
        return x, torch.zeros(int(plan["batch_size"]), dtype=torch.long)

    @torch.inference_mode()
    def _probabilities(self, models: list[nn.Module], x: np.ndarray, plan: dict, device: torch.device,
                       batch: int = 256) -> np.ndarray:
        """Softmax probabilities (N, K) averaged over models."""
        out = []
        for m in models:
            m.eval()
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).float().to(device)
            if plan.get("channels_last") and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            p = torch.stack([torch.softmax(m(xb).float(), 1) for m in models]).mean(0)
            out.append(p.cpu().numpy())
        return np.concatenate(out)

    def validate(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device) -> dict[str, float]:
        """AUC and accuracy on the validation cases; score = AUC."""
        from medsight.evaluation.classification import classification_metrics

        x, y = self._arrays(data, plan)
        probs = self._probabilities([model], x, plan, device)
        m = classification_metrics(y, probs)
        model.train()
        return {"score": m["auc"] if np.isfinite(m.get("auc", np.nan)) else m["accuracy"], "auc": m.get("auc", np.nan),
                "accuracy": m["accuracy"]}

    def finalize(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device, fold_dir: Path) -> dict:
        """Binary problems: the decision threshold chosen on the validation cases (Youden's J)."""
        from medsight.evaluation.classification import choose_threshold

        if len(plan["labels"]) != 2 or not len(data):
            return {}
        x, y = self._arrays(data, plan)
        if len(np.unique(y)) < 2:
            return {}
        probs = self._probabilities([model], x, plan, device)
        return {"threshold": float(choose_threshold(y, probs[:, 1]))}

    # -- inference --------------------------------------------------------------------------------
    predict_chunk = 256

    def predict_cases(self, models: list[nn.Module], arrays: list[np.ndarray], plan: dict, device: torch.device) -> list:
        """Class probabilities of several images of one size, in batches."""
        return list(self._probabilities(models, np.stack(arrays), plan, device))

    def predict_case(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device) -> np.ndarray:
        """Class probabilities (K,) of one preprocessed image."""
        return self._probabilities(models, array[None], plan, device)[0]

    def write_case(self, result: dict, out_dir: Path, plan: dict, decisions: dict) -> list[dict]:
        """One row of ``predictions.csv``: the predicted class and every class probability."""
        values = class_values(plan)
        threshold = decisions.get("threshold")
        p = np.asarray(result["prediction"], float)
        k = int(p[1] >= threshold) if threshold is not None and len(values) == 2 else int(np.argmax(p))
        row = {"case": result["case"], "label": label_token(plan, values[k])}
        row.update({f"prob_{label_token(plan, v)}": f"{q:.6f}" for v, q in zip(values, p)})
        return [row]

    def write_summary(self, rows: list[dict], out_dir: Path, plan: dict, decisions: dict) -> list[Path]:
        """``predictions.csv``: case, label, prob_<class> per class in the order of the class values."""
        values = class_values(plan)
        fields = ["case", "label", *[f"prob_{label_token(plan, v)}" for v in values]]
        return [write_csv(out_dir / "predictions.csv", rows, fields)]

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, out_dir: Path, manifest: Manifest, case_ids: list[str] | None = None) -> dict:
        """Classification metrics with bootstrap 95% intervals for the cases in ``predictions.csv``."""
        from medsight.evaluation.bootstrap import bootstrap_ci
        from medsight.evaluation.classification import classification_metrics

        path = Path(out_dir) / "predictions.csv"
        if not path.is_file():
            raise InputError("no predictions.csv here", path=out_dir, fix="run `medsight predict` first")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        by_id = manifest.case_by_id
        values = sorted(int(v) for v in manifest.labels)
        prob_cols = [c for c in rows[0] if c.startswith("prob_")] if rows else []
        keep = [r for r in rows if r["case"] in by_id and (case_ids is None or r["case"] in case_ids)]
        if not keep:
            raise InputError("no predicted case is in the reference dataset", path=path)
        y = np.array([values.index(int(by_id[r["case"]].label)) for r in keep])
        probs = np.array([[float(r[c]) for c in prob_cols] for r in keep])
        plan_like = {"labels": manifest.labels, "label_column": manifest.extra.get("label_column", "value")}
        tokens = [label_token(plan_like, v) for v in values]
        pred_idx = np.array([tokens.index(r["label"]) if r["label"] in tokens else -1 for r in keep])
        summary = classification_metrics(y, probs, ordinal=manifest.ordinal)
        summary["accuracy_of_written_labels"] = float(np.mean(pred_idx == y))
        cis = {}
        for name in ("auc", "accuracy", "balanced_accuracy"):
            if name in summary and np.isfinite(summary[name]):
                point, lo, hi = bootstrap_ci(lambda yy, pp, _n=name: classification_metrics(yy, pp)[_n], y, probs)
                cis[name] = {"value": point, "ci95": [lo, hi]}
        per_case = [{"case": r["case"], "reference": tokens[yi], "predicted": r["label"],
                     **{c: float(r[c]) for c in prob_cols}} for r, yi in zip(keep, y)]
        return {"task": "classification", "num_cases": len(keep), "summary": summary, "ci95": cis, "per_case": per_case}
