"""Exam classification: one image (2D or 3D) in, one diagnosis out."""
from __future__ import annotations

import csv
import logging
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
from medsight.tasks.batch_augment import mirror_variants, random_affine_batch


#: epochs a small-image network trains; the budget buys FIRST_MEMBERS members of them, then width, then members.
#: 2D buys all five members before any width: on RetinaMNIST (5 minutes, val AUC) width 16 x 3 members gave
#: 0.703 and 0.690 in two runs, width 8 x 4-5 members 0.780 and 0.771; BreastMNIST affords 5 at width 16
#: either way. 3D keeps 3 (AdrenalMNIST3D's 2.5D default: 4 members of width 32, 0.858 and 0.862).
TARGET_EPOCHS = {2: 50, 3: 40}
FIRST_MEMBERS = {2: 5, 3: 3}
MAX_MEMBERS = 5
AUGMENT_2D = {"rotation": [-0.26, 0.26], "scale": [0.9, 1.1], "translate": 0.05, "mirror_axes": [1]}
AUGMENT_3D = {"rotation": [-0.26, 0.26], "scale": [0.9, 1.1], "translate": 0.05, "mirror_axes": [0, 1, 2]}


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
    def plan_rules(self, manifest: Manifest, fingerprint: dict, device: torch.device,
                   budget_minutes: float | None = None, measure: bool = True) -> dict:
        """Input size, network, batch size and augmentation from the image size, channels and the machine.

        ``budget_minutes`` (the task's default when None) sizes the small-image networks.
        """
        median = [int(round(s)) for s in fingerprint["median_shape"]]
        nd = manifest.dims
        n_classes = len(manifest.labels)
        if n_classes < 2:
            raise InputError(f"every case has the one label {sorted(manifest.labels.values())}: a classifier needs "
                             "at least two classes", path=manifest.source or None,
                             fix="import images of two or more labels")
        channels = int(fingerprint["num_channels"])
        gpu = device.type == "cuda"
        if max(median) <= 64:
            budget = budget_minutes if budget_minutes is not None else self.default_budget_minutes[nd]
            plan = self._small_image_rules(manifest, median, channels, device, float(budget), measure)
        elif nd == 2 and channels == 3:
            side = 224 if gpu else 128
            plan = {"input_size": [side, side], "batch_size": 32,
                    "network": {"name": "efficientnet_lite0", "num_classes": n_classes, "pretrained": True},
                    "normalization": [{"scheme": "rgb", "scale": 255.0, "mean": m, "std": s}
                                      for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))],
                    "augmentation": dict(AUGMENT_2D, brightness=[0.9, 1.1], contrast=[0.9, 1.1])}
        else:
            side = (224 if gpu else 128) if nd == 2 else (96 if gpu else 64)
            plan = {"input_size": [side] * nd, "batch_size": 32 if nd == 2 else 8,
                    "network": {"name": "resnet18", "spatial_dims": nd, "in_channels": channels,
                                "num_classes": n_classes, "stem": "imagenet"},
                    "augmentation": dict(AUGMENT_2D if nd == 2 else AUGMENT_3D)}
        n_train = self._num_train(manifest)
        steps = max(1, math.ceil(n_train / int(plan["batch_size"])))
        plan.update({
            # label smoothing: small sets overfit to confident outputs; 0.1 is the usual amount. Ordinal grades
            # too: Gaussian soft labels ("ordinal_soft_labels", ordinal.py) are a plan option, not the default,
            # since on RetinaMNIST (same plan, train -> val) they lowered the one-vs-rest AUC from 0.780 to 0.698
            "loss": {"name": "ce", "label_smoothing": 0.1},
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05, "schedule": "cosine",
                          "warmup_steps": steps},  # one epoch of warm-up, then cosine to zero (final = best-settled)
            "test_time_augmentation": {"mirror_axes": list(plan["augmentation"].get("mirror_axes", []))},
            "channels_last": nd == 2,
            "label_column": manifest.extra.get("label_column", "value"), "ordinal": manifest.ordinal,
            "validation": {"every": 1, "fraction_of_time": 0.1},
        })
        if plan["network"]["name"] == "efficientnet_lite0":
            plan["optimizer"]["backbone_lr_factor"] = 0.1
        if manifest.extra.get("covariates"):  # fused with the network's probabilities (fit_companions)
            plan["covariates"] = dict(manifest.extra["covariates"])
            logging.getLogger("medsight.plan").info(
                f"{manifest.source or manifest.name}: clinical covariates {', '.join(plan['covariates'])} are fused "
                "with the images (a covariate model per fold; remove `covariates` from plan.json to leave them out)")
        return plan

    def _num_train(self, manifest: Manifest) -> int:
        """Training cases of fold 0 (every case when there are no folds)."""
        return max(1, len(manifest.fold_cases(0)[0]) if manifest.splits else len(manifest.cases))

    def _small_image_rules(self, manifest: Manifest, median: list[int], channels: int, device: torch.device,
                           budget_minutes: float, measure: bool = True) -> dict:
        """Images of at most 64 pixels a side: compact networks at the input's own size, sized to the budget.

        2D: compact ResNet-18s, full resolution in the first stage up to 32 pixels a side. Volumes this small
        are object crops (a lesion, an organ, a nodule at the centre), and get the 2.5D network: the three
        orthogonal planes through the centre, one 2D stream each (Setio et al. 2016's multi-view classifier);
        on AdrenalMNIST3D, with the same 5-minute budget, it reached validation AUC 0.867 / ACC 0.816 against
        0.831 / 0.776 for a 3D ResNet with a stride-2 stem (benchmarks/adrenal_views.py, which also keeps
        the 3D network as a variant: set the plan's ``network`` to train it). The budget (on this machine,
        measured) buys, in this order: ``FIRST_MEMBERS[nd]`` ensemble members of ``TARGET_EPOCHS`` epochs each at
        the narrowest width; then width (the widest of the ladder that still affords them); then more
        members (up to ``MAX_MEMBERS``), never more epochs. Past a few dozen epochs a small set is overfitted
        (on a split of BreastMNIST's training set, AUC peaked at 0.88 near epoch 70 of 157 and ended at
        0.82), while independently initialised members average their errors away. Without ``measure``
        nothing is timed: the narrowest width and one member.
        """
        from medsight.classification.sizing import (
            PLANES_LADDER, WIDTH_LADDER, planes_seconds_per_sample, seconds_per_sample, widest_that_fits)

        nd = manifest.dims
        n_train = self._num_train(manifest)
        budget_s = budget_minutes * 60.0 * 0.9 / 1.15  # validation and data loading as the plan counts them
        batch = 64 if nd == 2 else 32
        if nd == 3:
            ladder, width_key = PLANES_LADDER, "features"
            net = {"name": "orthogonal_planes", "in_channels": channels, "num_classes": len(manifest.labels)}

            def cost(widths):
                return planes_seconds_per_sample(channels, median, widths, device, batch=batch)
        else:
            ladder, width_key = (WIDTH_LADDER if device.type == "cuda" else WIDTH_LADDER[:-1]), "widths"
            stem_stride = 1 if max(median) <= 32 else 2
            net = {"name": "small_resnet", "spatial_dims": nd, "in_channels": channels,
                   "num_classes": len(manifest.labels), "layers": [2, 2, 2, 2], "stem_stride": stem_stride}

            def cost(widths):
                return seconds_per_sample(nd, channels, median, widths, stem_stride, device, batch=batch)
        if measure:
            index, epochs = widest_that_fits(ladder, cost, n_train, budget_s, TARGET_EPOCHS[nd] * FIRST_MEMBERS[nd])
        else:
            index, epochs = 0, TARGET_EPOCHS[nd]
        members = int(min(MAX_MEMBERS, max(1, epochs // TARGET_EPOCHS[nd])))
        net.update({width_key: list(ladder[index]), "dropout": 0.2, "members": members})
        aug = dict(AUGMENT_2D) if nd == 2 else dict(AUGMENT_3D)
        if nd == 2 and channels == 3:
            aug.update(brightness=[0.9, 1.1], contrast=[0.9, 1.1])
        return {"input_size": median, "network": net, "batch_size": batch, "augmentation": aug}

    def steps_per_epoch(self, plan: dict, num_train_cases: int) -> int:
        """One pass over the training cases."""
        return max(1, math.ceil(num_train_cases / int(plan["batch_size"])))

    # -- training ---------------------------------------------------------------------------------
    def build_network(self, plan: dict) -> nn.Module:
        """The network of the plan's ``network`` entry (any name of :func:`medsight.nets.create_model`)."""
        import medsight.classification.exam_networks  # noqa: F401  (registers slice_attention, orthogonal_planes)
        import medsight.classification.networks  # noqa: F401  (registers small_resnet)
        from medsight.nets import create_model

        cfg = dict(plan["network"])
        return create_model(cfg.pop("name"), **cfg)

    def build_loss(self, plan: dict) -> nn.Module:
        """The plan's loss over class indices (averaged over the members of an ensemble network).

        ``ce`` (with optional ``label_smoothing``), or ``ordinal_soft_labels`` (with ``sigma`` in grades).
        """
        from medsight.classification.networks import EnsembleLoss
        from medsight.classification.ordinal import DEFAULT_SIGMA, OrdinalSoftLabelLoss

        loss = plan["loss"]
        if loss["name"] == "ordinal_soft_labels":
            return EnsembleLoss(OrdinalSoftLabelLoss(float(loss.get("sigma", DEFAULT_SIGMA))))
        if loss["name"] != "ce":
            raise InputError(f"unknown classification loss {loss['name']!r}", fix="use ce or ordinal_soft_labels")
        return EnsembleLoss(nn.CrossEntropyLoss(label_smoothing=float(loss.get("label_smoothing", 0.0))))

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
                       batch: int = 256, test_time_augmentation: bool = True) -> np.ndarray:
        """Softmax probabilities (N, K) averaged over models and, unless told not to, the plan's test-time flips."""
        mirror = (plan.get("test_time_augmentation") or {}).get("mirror_axes", []) if test_time_augmentation else []
        out = []
        for m in models:
            m.eval()
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).float().to(device)
            if plan.get("channels_last") and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            variants = mirror_variants(xb, list(mirror))
            p = torch.stack([torch.softmax(m(v).float(), 1) for m in models for v in variants]).mean(0)
            out.append(p.cpu().numpy())
        return np.concatenate(out)

    def validate(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device) -> dict[str, float]:
        """AUC and accuracy on the validation cases (no test-time flips: quick); score = AUC."""
        from medsight.evaluation.classification import classification_metrics

        x, y = self._arrays(data, plan)
        probs = self._probabilities([model], x, plan, device, test_time_augmentation=False)
        m = classification_metrics(y, probs)
        model.train()
        auc = m.get("auc")  # None where undefined: validation cases of one class
        auc = float("nan") if auc is None else float(auc)
        return {"score": auc if np.isfinite(auc) else m["accuracy"], "auc": auc, "accuracy": m["accuracy"]}

    def fit_companions(self, plan: dict, train_data: CachedCases) -> dict:
        """The clinical covariates' model of a plan with ``covariates``, fitted on the fold's training cases
        (:class:`medsight.classification.covariates.CovariateModel`): ``{"covariate_model": state}``."""
        from medsight.classification.covariates import CovariateModel

        if not plan.get("covariates"):
            return {}
        _, y = self._arrays(train_data, plan)
        model = CovariateModel(plan["covariates"], len(plan["labels"]))
        model.fit([train_data.covariates.get(i, {}) for i in train_data.ids], y)
        return {"covariate_model": model.state()}

    def finalize(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device, fold_dir: Path,
                 companions: dict | None = None) -> dict:
        """Binary problems: the decision threshold chosen on the validation cases (Youden's J), on the
        probabilities fused with the covariate model when the fold has one (and both validation AUCs kept)."""
        from medsight.classification.covariates import ensemble_fuse
        from medsight.evaluation.classification import choose_threshold, roc_auc

        if not len(data):
            return {}
        x, y = self._arrays(data, plan)
        if len(np.unique(y)) < 2:
            return {}
        probs = self._probabilities([model], x, plan, device)
        out = {}
        state = (companions or {}).get("covariate_model")
        if state:
            images_auc = roc_auc(y, probs)
            probs = ensemble_fuse(probs, [data.covariates.get(i, {}) for i in data.ids], [state])
            out.update(validation_auc_images=float(images_auc), validation_auc_with_covariates=float(roc_auc(y, probs)))
        if len(plan["labels"]) == 2:
            out["threshold"] = float(choose_threshold(y, probs[:, 1]))
        return out

    # -- inference --------------------------------------------------------------------------------
    predict_chunk = 256

    def with_inference_options(self, plan: dict, test_time_augmentation: bool = True,
                               overlap: float | None = None) -> dict:
        """The plan with its test-time flips off when asked; a classifier sees whole images, so an
        ``overlap`` of sliding windows is refused."""
        if overlap is not None:
            raise InputError("a classification run predicts whole images: it has no sliding windows to overlap",
                             fix="leave --overlap out")
        if test_time_augmentation:
            return plan
        return {**plan, "test_time_augmentation": {**(plan.get("test_time_augmentation") or {}), "mirror_axes": []}}

    def predict_cases(self, models: list[nn.Module], arrays: list[np.ndarray], plan: dict, device: torch.device) -> list:
        """Class probabilities of several images of one size, in batches."""
        return list(self._probabilities(models, np.stack(arrays), plan, device))

    def predict_case(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device) -> np.ndarray:
        """Class probabilities (K,) of one preprocessed image."""
        return self._probabilities(models, array[None], plan, device)[0]

    def write_case(self, result: dict, out_dir: Path, plan: dict, decisions: dict) -> list[dict]:
        """One row of ``predictions.csv``: the predicted class and every class probability (fused with the
        folds' covariate models, when the run has them, from the case's ``covariates``; missing: empty)."""
        from medsight.classification.covariates import ensemble_fuse

        values = class_values(plan)
        threshold = decisions.get("threshold")
        p = np.asarray(result["prediction"], float)
        if decisions.get("covariate_models"):
            p = ensemble_fuse(p[None], [result.get("covariates") or {}], decisions["covariate_models"])[0]
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
        by_id = manifest.case_by_id
        values = sorted(int(v) for v in manifest.labels)
        plan_like = {"labels": manifest.labels, "label_column": manifest.extra.get("label_column", "value")}
        tokens = [label_token(plan_like, v) for v in values]
        rows, prob_cols = read_predictions(path, tokens)
        keep = [r for r in rows if r["case"] in by_id and (case_ids is None or r["case"] in case_ids)]
        if not keep:
            raise InputError("no predicted case is in the reference dataset", path=path)
        y = np.array([values.index(int(by_id[r["case"]].label)) for r in keep])
        probs = np.array([[float(r[c]) for c in prob_cols] for r in keep])
        pred_idx = np.array([tokens.index(r["label"]) for r in keep])
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


def read_predictions(path: Path, class_tokens: list[str]) -> tuple[list[dict], list[str]]:
    """Rows of a classification ``predictions.csv`` and its probability columns, checked against the classes.

    ``class_tokens`` are the label column's values in the order of the label values; the file must hold
    ``case``, ``label`` and the column ``prob_<class>`` of every class, each a probability, and labels among
    the classes. Anything else is refused naming the file and, where it is one row's fault, the line. The
    probability columns are returned in the order of the label values.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    prob_cols = [f"prob_{t}" for t in class_tokens]  # in the order of the label values, whatever the file's
    missing = [c for c in ("case", "label", *prob_cols) if c not in columns]
    if missing:
        raise InputError(f"lacks the columns {', '.join(missing)} (it has {', '.join(columns) or 'none'})", path=path,
                         fix="write it with `medsight predict`: case, label and one prob_<class> per class")
    for line, r in enumerate(rows, start=2):
        try:
            p = np.array([float(r[c]) for c in prob_cols])
        except (TypeError, ValueError):
            raise InputError(f"line {line} has a probability that is not a number", path=path) from None
        if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
            raise InputError(f"line {line} has a probability outside [0, 1] or NaN: {p.tolist()}", path=path)
        if r["label"] not in class_tokens:
            raise InputError(f"line {line}: label {r['label']!r} is not a class", path=path,
                             fix=f"use one of {class_tokens}")
    return rows, prob_cols
