"""Rules that turn a fingerprint into ``plan.json``; the plan is the single place that sizes the work."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from medsight import __version__
from medsight.datasets.manifest import Manifest, atomic_write_text
from medsight.errors import PlanError
from medsight.training.ema import ema_decay

PLAN_NAME = "plan.json"
PLAN_VERSION = 1
#: plan entries a person may edit; everything the stages read is here
REQUIRED_KEYS = ("task", "dims", "normalization", "network", "loss", "optimizer", "batch_size", "epochs",
                 "steps_per_epoch", "seed")


def target_spacing_rule(spacings: np.ndarray, shapes: np.ndarray) -> list[float] | None:
    """nnU-Net's rule: the median spacing; for strongly anisotropic data the coarse axis takes the 10th
    percentile of its spacings. None when every case already shares one spacing."""
    if np.allclose(spacings, spacings[0], rtol=1e-3):
        return None
    target = np.median(spacings, 0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if others and target[worst] > 3 * max(target[others]):
        target[worst] = max(np.percentile(spacings[:, worst], 10), max(target[others]))
    return [float(s) for s in target]


def normalization_rule(manifest: Manifest, fingerprint: dict) -> list[dict]:
    """CT: clip to the foreground 0.5/99.5 percentiles then z-score; RGB: per channel; others: per-image z-score."""
    out = []
    modality = {int(k): v.upper() for k, v in manifest.modality.items()}
    for c, stats in enumerate(fingerprint["channels"]):
        kind = modality.get(c, "")
        if kind == "CT":
            out.append({"scheme": "ct", "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
                        "mean": stats["mean"], "std": stats["std"]})
        elif kind in ("R", "G", "B", "RGB") or (fingerprint["num_channels"] == 3 and stats["max"] > 1.5
                                                and stats["min"] >= 0 and stats["max"] <= 255):
            out.append({"scheme": "rgb", "scale": 255.0, "mean": stats["mean"] / 255.0,
                        "std": max(stats["std"] / 255.0, 1e-3)})
        else:
            out.append({"scheme": "zscore"})
    return out


def make_plan(manifest: Manifest, fingerprint: dict, budget_minutes: float | None = None,
              device: torch.device | None = None, measure: bool = True, seed: int = 0) -> dict:
    """The plan for ``manifest``: common rules, the task's rules, and epochs from the time budget."""
    from medsight.planning.budget import measure_step_seconds, schedule_epochs
    from medsight.tasks import get_task

    device = device or torch.device("cpu")
    task = get_task(manifest.task)
    spacings = np.asarray(fingerprint["spacings"], float)
    shapes = np.asarray(fingerprint["shapes"], float)
    crop = fingerprint.get("median_nonzero_fraction", 1.0) < 0.75 and manifest.task == "segmentation"
    plan: dict = {
        "plan_version": PLAN_VERSION, "medsight_version": __version__,
        "task": manifest.task, "dims": manifest.dims, "channels": manifest.channels,
        "labels": manifest.labels, "label_mapping": manifest.label_mapping, "regions": manifest.regions,
        "target_spacing": target_spacing_rule(spacings, shapes) if manifest.task != "classification" else None,
        "input_size": None,
        "normalization": normalization_rule(manifest, fingerprint),
        "crop_to_nonzero": bool(crop), "use_mask_for_norm": bool(crop),
        "image_order": 3, "label_resampling": "onehot",
        "seed": seed, "device_planned": device.type,
    }
    budget = budget_minutes if budget_minutes is not None else task.default_budget_minutes[manifest.dims]
    plan.update(task.plan_rules(manifest, fingerprint, device, budget_minutes=float(budget), measure=measure))
    n_train = max(1, len(manifest.fold_cases(0)[0]) if manifest.splits else len(manifest.cases))
    plan["steps_per_epoch"] = task.steps_per_epoch(plan, n_train)
    plan["budget_minutes"] = float(budget)
    step_s = measure_step_seconds(task, plan, device) if measure else float("nan")
    plan["measured_step_seconds"] = None if np.isnan(step_s) else round(step_s, 4)
    if not measure:
        plan["epochs"] = 1
        return plan
    parts = task.measure_epoch_parts(manifest, plan, device, fingerprint)
    if parts:
        n_val = len(manifest.fold_cases(0)[1]) if manifest.splits else 0
        plan["measured_epoch_parts"] = {"step": round(step_s, 4), **parts, "validation_cases": n_val}
    schedule_epochs(plan, float(budget))
    return plan


def validate_plan(plan: dict, path: Path | None = None) -> dict:
    """Check an (edited) plan for the entries every stage needs; raise PlanError naming what is wrong."""
    missing = [k for k in REQUIRED_KEYS if k not in plan]
    if missing:
        raise PlanError(f"plan lacks {', '.join(missing)}", path=path, fix="delete plan.json and run `medsight plan` again")
    if int(plan["epochs"]) < 1 or int(plan["steps_per_epoch"]) < 1 or int(plan["batch_size"]) < 1:
        raise PlanError("epochs, steps_per_epoch and batch_size must be >= 1", path=path)
    ema_decay(plan, path)
    validate_regions(plan, path)
    validate_unet_patch(plan, path)
    return plan


def validate_unet_patch(plan: dict, path: Path | None = None) -> None:
    """A U-Net plan's patch must be a multiple of the network's strides (times its ``stem``) on every axis;
    an edit of either that breaks this is named here, not by the first training step."""
    from medsight.nets.unet import unet_divisor

    network, patch = plan.get("network") or {}, plan.get("patch_size")
    if network.get("name") != "unet" or not patch or not network.get("strides"):
        return
    divisor = unet_divisor(network["strides"], network.get("stem"))
    if len(divisor) != len(patch) or any(int(p) % d for p, d in zip(patch, divisor)):
        raise PlanError(f"patch_size {list(patch)} is not a multiple of {divisor} (the U-Net's strides"
                        f"{' times its stem' if network.get('stem') else ''}) on every axis", path=path,
                        fix="make each patch axis a multiple of that, or delete plan.json and plan again")


def validate_regions(plan: dict, path: Path | None = None) -> None:
    """Region training needs regions of known labels; an explicit ``regions_class_order`` must fit them."""
    from medsight.tasks.regions import check_class_order

    regions = plan.get("regions") or {}
    if plan.get("region_training") and not regions:
        raise PlanError("region_training is on but the plan has no regions", path=path,
                        fix="set region_training to false, or import the dataset with --regions")
    if not regions:
        return
    labels = {int(v) for v in plan.get("labels") or {}}
    unknown = sorted({int(v) for vs in regions.values() for v in vs} - labels) if labels else []
    if unknown:
        raise PlanError(f"regions name label values {unknown} that are not labels of the dataset", path=path)
    if plan.get("region_training") and plan.get("regions_class_order"):
        check_class_order(regions, plan["regions_class_order"], path)


def save_plan(plan: dict, dataset_dir: str | Path) -> Path:
    """Write ``plan.json`` atomically."""
    path = Path(dataset_dir) / PLAN_NAME
    atomic_write_text(path, json.dumps(plan, indent=1))
    return path


def load_plan(path_or_dir: str | Path) -> dict:
    """Read and validate a plan file (or ``DIR/plan.json``)."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / PLAN_NAME
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError("no plan.json", path=path, fix="run `medsight plan DATASET_DIR`") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"plan is not valid JSON ({e.msg} at line {e.lineno})", path=path) from None
    except (UnicodeDecodeError, NotADirectoryError, IsADirectoryError):
        raise PlanError("is not a plan file, nor a folder holding plan.json", path=path) from None
    return validate_plan(plan, path)


def plan_hash(plan: dict) -> str:
    """Hash of everything in the plan that changes training (not the budget's bookkeeping)."""
    # inference settings (overlap, mirroring, NMS, how regions are painted into labels) may be edited
    # after training without retraining
    skip = {"measured_step_seconds", "measured_epoch_parts", "precision_step_seconds", "budget_minutes", "medsight_version", "device_planned", "fingerprint_signature",
            "inference", "regions_class_order", "covariates_imported"}
    sub = {k: v for k, v in plan.items() if k not in skip}
    return hashlib.sha1(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


def regions_summary(plan: dict) -> str:
    """One line on the plan's regions: trained (sigmoid outputs, painted values) or only scored."""
    names = ", ".join(plan["regions"])
    if not plan.get("region_training"):
        return f"{names}: scored (training is softmax over labels)"
    from medsight.tasks.regions import class_order

    painted = ", ".join(f"{n}->{v}" for n, v in zip(plan["regions"], class_order(plan)))
    return f"{names}: one sigmoid output each; painted {painted}"


def inference_summary(plan: dict) -> str:
    """How ``predict`` runs the plan: sliding windows' overlap and the test-time mirrorings (each one a full
    pass: ``predict --disable-tta`` makes it one); empty for a plan that says nothing of either."""
    inference = plan.get("inference") or {}
    axes = inference.get("mirror_axes", (plan.get("test_time_augmentation") or {}).get("mirror_axes"))
    parts = []
    if inference.get("overlap") is not None:
        parts.append(f"sliding windows, overlap {inference['overlap']}")
    if axes:
        parts.append(f"mirrored on axes {list(axes)}: {2 ** len(axes)} passes (predict --disable-tta: 1)")
    elif axes is not None:
        parts.append("no test-time mirroring")
    return "; ".join(parts)


def summary_table(plan: dict) -> str:
    """A short human-readable table of the plan."""
    net = plan["network"]
    rows = [
        ("task", f"{plan['task']} ({plan['dims']}D)"),
        ("network", f"{net.get('name')} " + ", ".join(f"{k}={v}" for k, v in net.items()
                                                       if k in ("features", "pretrained", "num_classes", "widths", "stem",
                                                                "decoder_convs"))),
        ("input", f"patch {plan.get('patch_size')}" if plan.get("patch_size") else f"size {plan.get('input_size')}"),
        ("spacing", str(plan.get("target_spacing") or "as the files")
                    + (" (low resolution: the patch covers a quarter of the median image)" if plan.get("lowres") else "")
                    + (f"; every image scaled to the field of view of {plan['field_of_view_shape']}"
                       if plan.get("field_of_view_shape") else "")),
        ("normalisation", ", ".join(n["scheme"] for n in plan["normalization"])),
        ("batch size", str(plan["batch_size"])),
        ("loss", plan["loss"]["name"] + (" (sigmoid per region)" if plan.get("region_training") else "")),
        ("optimiser", f"{plan['optimizer']['name']} lr={plan['optimizer']['lr']} {plan['optimizer'].get('schedule', '')}"
                      + (f", weights averaged (EMA {plan['optimizer']['ema']})" if plan["optimizer"].get("ema") else "")),
        ("training", f"{plan['epochs']} epochs x {plan['steps_per_epoch']} steps"
                     f" (budget {plan.get('budget_minutes')} min, step {plan.get('measured_step_seconds')} s on "
                     f"{plan.get('device_planned')})"),
    ]
    parts = plan.get("measured_epoch_parts")
    if parts:
        every = plan.get("validation", {}).get("every", 1)
        in_epoch = f"a step {parts['step_in_epoch']} s inside an epoch, " if parts.get("step_in_epoch") else ""
        rows.append(("epoch parts", f"{in_epoch}data {parts['data_per_step']} s a step, checkpoint {parts['checkpoint']} s, "
                                    f"validation {parts['validation_per_case']} s a case x {parts['validation_cases']}"
                                    f" every {every} epoch{'s' if every > 1 else ''}"))
    if plan.get("mixed_precision") == "bf16":
        timed = plan.get("precision_step_seconds") or {}
        rows.append(("precision", "bfloat16 autocast" + (f" (step {timed['bfloat16']} s against {timed['float32']} s"
                                                          " in float32)" if timed else "")
                     + ("; predicts in float32" if plan.get("inference", {}).get("mixed_precision") is False else "")))
    inference = inference_summary(plan)
    if inference:
        rows.append(("inference", inference))
    if plan.get("regions"):
        rows.insert(3, ("regions", regions_summary(plan)))
    if plan.get("covariates"):
        rows.insert(3, ("covariates", ", ".join(f"{k} ({v})" for k, v in plan["covariates"].items())
                        + ": a logistic regression per fold, fused with the images' probabilities"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)
