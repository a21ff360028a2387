"""Segmentation: U-Net 2D/3D trained on patches (or whole images), Gaussian sliding-window inference."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from medsight.datasets.manifest import Manifest
from medsight.errors import InputError, PlanError
from medsight.preprocessing.cache import CachedCases
from medsight.preprocessing.pipeline import field_of_view_factor
from medsight.sampling.regions import region_training
from medsight.tasks.base import Task, write_csv
from medsight.tasks.postprocessing import apply as apply_postprocessing
from medsight.tasks.postprocessing import dice as _dice
from medsight.tasks.regions import check_class_order, class_order, default_class_order, paint_regions

#: voxels of one training patch and batch size, by device kind and dims (sized so a step stays short)
PATCH_BUDGET = {("cpu", 2): (256 * 256, 4), ("cpu", 3): (64 ** 3, 2),
                ("cuda", 2): (512 * 512, 12), ("cuda", 3): (128 ** 3, 2)}
#: U-Net base widths a CPU plan chooses from (narrowest first); a GPU plan takes nnU-Net's 32
BASE_FEATURES = (8, 16, 24, 32)
#: optimiser steps a CPU plan must afford before it widens the network: on small data more steps of a
#: narrow U-Net beat few steps of a wide one (nnU-Net's 250k steps are out of reach on a CPU). DRIVE, 20 min
#: on one core: base 16 x 2650 steps (6 stages) ended at Dice 0.817 inside the FOV against 0.813-0.815 for
#: base 32 x 1250 steps, and reached 0.80 in 316 s against 435 s (NOTES.md, session 11)
MIN_STEPS = {2: 1500, 3: 400}
#: a CPU plan in 2D stops adding U-Net stages once the receptive field covers the patch (nnU-Net pools
#: down to 4 pixels: a 256^2 patch gets 7 stages that see 635 pixels, 6 see 315); the 7th stage costs 14 %
#: of a base-16 step and 13M of its 21M parameters for context outside the patch, and a large organ gains
#: nothing from it: Shenzhen folds 2 and 3 (same width and 53 epochs) gave lung Dice 0.920, 0.866, 0.883,
#: 0.905 with 7 stages against 0.930, 0.871, 0.881, 0.933 with 6 (NOTES.md, session 12)
CPU_2D_STOP_AT_PATCH = True
#: a 3D CPU plan whose patch covers less of the median image than this works at a coarser spacing
#: (nnU-Net's ``3d_lowres`` threshold; a CPU budget cannot afford the full-resolution cascade stage)
LOWRES_COVERAGE = 0.25
#: the most a low-resolution plan coarsens the spacing (x the median spacing)
LOWRES_MAX_FACTOR = 4.0


#: a foreground layout this consistent across cases (``planning/layout.py``) is anatomy in a canonical view
CONSISTENT_LAYOUT = 0.5
#: an axis along which such a layout overlaps its mirror image at least this much may be mirrored
MIRROR_SYMMETRY = 0.6
#: in-plane rotation of 2D training for a consistent layout (nnU-Net's 3D range is +-30 degrees)
CANONICAL_ROTATION_2D = 0.2618


#: inputs whose format cannot hold a predicted mask: JPEG is lossy (label values change at edges); any other
#: format medsight cannot write (a DICOM series or file) -> NIfTI
MASK_EXTENSIONS = {".jpg": ".png", ".jpeg": ".png"}


def mask_extension(extension: str) -> str:
    """The extension a predicted mask is written with: the input's, unless that format cannot hold it exactly."""
    from medsight.io.writers import WRITABLE_EXTENSIONS

    extension = MASK_EXTENSIONS.get(extension.lower(), extension.lower())
    return extension if extension in WRITABLE_EXTENSIONS else ".nii.gz"


def canonical_view_2d(nd: int, layout: dict | None) -> bool:
    """Whether a set is 2D anatomy in a canonical view: its foreground layout (``planning/layout.py``) is at
    least :data:`CONSISTENT_LAYOUT` consistent across cases."""
    return nd == 2 and layout is not None and float(layout.get("consistency", 0.0)) >= CONSISTENT_LAYOUT


def field_of_view_rule(nd: int, fingerprint: dict) -> list[int] | None:
    """The shape every image is scaled to (proportions kept; see ``preprocessing.pipeline.target_shape``) when
    a 2D set shows anatomy in a canonical view (layout consistency >= :data:`CONSISTENT_LAYOUT`) in files that
    store no physical pixel size (PNG, JPEG, arrays): each such image frames the same field of view, so an
    image of another size is the same anatomy at another scale. The median shape; None otherwise.

    Shenzhen chest X-rays (512^2 PNGs): [512, 512], so a 256^2 radiograph is predicted at the scale the
    network learned. Microscopy tiles and fundus vessels (consistency 0.00) keep their pixels: a larger
    tile there is more tissue at the same scale. Files with a spacing (NIfTI, DICOM) are resampled by it.
    """
    if fingerprint.get("spacing_known", True) or not canonical_view_2d(nd, fingerprint.get("foreground_layout")):
        return None
    return [int(round(float(s))) for s in fingerprint["median_shape"]]


def decides_postprocessing(plan: dict) -> bool:
    """Whether training ends by deciding post-processing on the validation cases (``finalize``), which the
    budget then counts (``measure_epoch_parts``)."""
    return bool(plan.get("postprocessing", {}).get("decide_on_validation", True))


def size_unit(plan: dict, shape: tuple[int, ...], spacing: tuple[float, ...]) -> float:
    """Volume of one pixel of an image of ``shape`` and ``spacing`` in the unit that post-processing sizes are
    decided and applied in: physical (the spacing's) normally; with a ``field_of_view_shape``, pixels of the
    reference field of view, so that a size decided on 512^2 radiographs means the same on a 256^2 one."""
    if plan.get("field_of_view_shape"):
        return float(field_of_view_factor(tuple(shape), plan["field_of_view_shape"]) ** len(shape))
    return float(np.prod(spacing))


def augmentation_rule(nd: int, layout: dict | None) -> dict:
    """Training augmentation: nnU-Net's (any 2D rotation, +-30 degrees in 3D, mirroring on every axis), except
    for 2D anatomy in a canonical view (``layout["consistency"]`` >= :data:`CONSISTENT_LAYOUT`): rotation
    within +-15 degrees, and mirroring only along the axis most symmetric under mirroring, when its flip
    overlap reaches :data:`MIRROR_SYMMETRY` (a body has one plane of symmetry; a "left kidney" label has none).

    Shenzhen chest X-rays: consistency 0.75, flip overlap 0.45 up-down and 0.75 left-right -> +-15 degrees,
    mirrored left-right only. DRIVE, ISBI EM and BraTS tumours (consistency 0.00) keep nnU-Net's rule.
    3D keeps it too: nnU-Net mirrors CT organs on every axis with success, and no 3D organ set here
    measures otherwise.
    """
    aug = {"rotation": [-3.1416, 3.1416] if nd == 2 else [-0.5236, 0.5236], "scale": [0.7, 1.4],
           "mirror_axes": list(range(nd)), "elastic": False, "gamma": [0.7, 1.5], "noise": 0.1,
           "blur": [0.5, 1.0], "brightness": [0.75, 1.25], "contrast": [0.75, 1.25], "low_resolution": [0.5, 1.0]}
    if canonical_view_2d(nd, layout):
        aug["rotation"] = [-CANONICAL_ROTATION_2D, CANONICAL_ROTATION_2D]
        flips = [float(v) for v in layout.get("flip_overlap", [])]
        best = int(np.argmax(flips)) if flips else -1
        aug["mirror_axes"] = [best] if best >= 0 and flips[best] >= MIRROR_SYMMETRY else []
    return aug


def patch_size_rule(median_shape: list[float], spacing: list[float], max_voxels: int, divisor: int = 16) -> list[int]:
    """nnU-Net-like: start from the median image, shrink the axis largest in physical size until it fits."""
    patch = [float(s) for s in median_shape]
    phys = lambda p: [p[a] * spacing[a] for a in range(len(p))]  # noqa: E731
    while np.prod(patch) > max_voxels:
        a = int(np.argmax(phys(patch)))
        patch[a] = max(divisor, patch[a] * 0.9)
    return [int(max(divisor, np.ceil(p / divisor) * divisor)) for p in patch]


def lowres_spacing(median_shape: list[float], spacing: list[float], max_voxels: int,
                   coverage: float = LOWRES_COVERAGE, max_factor: float = LOWRES_MAX_FACTOR) -> list[float] | None:
    """nnU-Net's ``3d_lowres`` rule: the spacing, coarsened in steps of 3 %, at which a patch of at most
    ``max_voxels`` covers ``coverage`` of the median image; None when it already does at ``spacing``.

    Axes finer than half the coarsest are coarsened first (anisotropic data keeps its thick slices until
    the others catch up), as nnU-Net does; no axis goes beyond ``max_factor`` x its median spacing."""
    physical = np.asarray(median_shape, float) * np.asarray(spacing, float)
    start = np.asarray(spacing, float)
    current = start.copy()

    def covered(sp: np.ndarray) -> float:
        shape = physical / sp
        patch = patch_size_rule(list(shape), list(sp), max_voxels)
        return float(np.prod(np.minimum(patch, shape)) / np.prod(shape))

    if covered(current) >= coverage:
        return None
    limit = start * max_factor
    while covered(current) < coverage:
        movable = current < limit
        if not movable.any():
            break
        fine = movable & (current < current.max() / 2)
        grow = fine if fine.any() else movable
        current[grow] = np.minimum(current[grow] * 1.03, limit[grow])
    return [round(float(s), 4) for s in current]


def _with_base_width(rules: dict, nd: int, spacing: list[float], base: int) -> dict:
    """A candidate plan (for timing a step) of ``rules`` with a U-Net of base width ``base`` (its stages as
    many as the rules' U-Net has)."""
    from medsight.nets.unet import plan_unet

    stages = len(rules["network"]["strides"])
    network = {**rules["network"], **plan_unet(rules["patch_size"], spacing, base_features=base, max_stages=stages)}
    return {**rules, "dims": nd, "channels_last": False, "network": network}


def structures(plan: dict) -> dict[str, list[int]]:
    """Structures to score: the plan's regions, or every foreground label on its own."""
    if plan.get("regions"):
        return {k: list(v) for k, v in plan["regions"].items()}
    return {name: [int(v)] for v, name in sorted(plan["labels"].items(), key=lambda kv: int(kv[0])) if int(v) != 0}


def trained_structures(plan: dict) -> dict[str | int, list[int]]:
    """What the network is trained on, keyed as decisions name them: regions by name (region training),
    else each foreground label value on its own."""
    if region_training(plan):
        return {k: [int(v) for v in vs] for k, vs in plan["regions"].items()}
    return {int(v): [int(v)] for v in sorted(plan["labels"], key=int) if int(v) != 0}


def output_channels(plan: dict) -> int:
    """Network outputs: one per region (sigmoid) with region training, else one per label (softmax)."""
    return len(plan["regions"]) if region_training(plan) else len(plan["labels"])


def structure_mask(label: np.ndarray, values: list[int]) -> np.ndarray:
    """Voxels of ``label`` holding one of ``values``."""
    return label == values[0] if len(values) == 1 else np.isin(label, values)


def region_rules(manifest: Manifest) -> dict:
    """``region_training`` (on when the dataset declares regions, as nnU-Net) and the painting order:
    the dataset's own ``regions_class_order`` (nnU-Net dataset.json) when valid, else the default rule."""
    if not manifest.regions:
        return {"region_training": False}
    given = manifest.extra.get("regions_class_order")
    order = default_class_order(manifest.regions)
    if given:
        try:
            check_class_order(manifest.regions, given)
            order = [int(v) for v in given]
        except PlanError:
            pass
    return {"region_training": True, "regions_class_order": order}


class SegmentationTask(Task):
    """nnU-Net-style segmentation that sizes itself to the machine."""

    name = "segmentation"
    default_budget_minutes = {2: 20.0, 3: 30.0}

    # -- planning ---------------------------------------------------------------------------------
    def plan_rules(self, manifest: Manifest, fingerprint: dict, device: torch.device,
                   budget_minutes: float | None = None, measure: bool = True) -> dict:
        """Patch (or whole image), U-Net topology, loss, sampler, augmentation, inference settings.

        A dataset with regions trains one sigmoid output per region (``region_training``; Dice + BCE per
        region); editing it to false trains softmax over the labels. A 3D CPU plan whose patch would cover
        less than :data:`LOWRES_COVERAGE` of the median image works at the coarser spacing of
        :func:`lowres_spacing` (``target_spacing``, ``lowres``; predictions are resampled back to each
        input's grid). On a CPU, with ``measure``, training runs in bfloat16 autocast where this CPU times it
        faster (``mixed_precision``), the U-Net's base width is the widest of :data:`BASE_FEATURES`
        whose timed step still affords :data:`MIN_STEPS` steps in the budget, and in 2D its stages stop
        once they see the whole patch (:data:`CPU_2D_STOP_AT_PATCH`)."""
        from medsight.nets.unet import plan_unet, unet_divisor

        nd = manifest.dims
        spacing = fingerprint["median_spacing"]
        median = fingerprint["median_shape"]
        max_vox, batch = PATCH_BUDGET[("cuda" if device.type == "cuda" else "cpu", nd)]
        coarse = lowres_spacing(median, spacing, max_vox) if nd == 3 and device.type != "cuda" else None
        if coarse is not None:
            median = [m * s / c for m, s, c in zip(median, spacing, coarse)]
            spacing = coarse
        patch = patch_size_rule(median, spacing, max_vox)
        topo = plan_unet(patch, spacing, base_features=32,
                         stop_at_patch=CPU_2D_STOP_AT_PATCH and nd == 2 and device.type != "cuda")
        div = unet_divisor(topo["strides"])
        patch = [int(np.ceil(p / d) * d) for p, d in zip(patch, div)]
        whole = all(p >= m for p, m in zip(patch, median))
        regions = region_rules(manifest)
        n_out = output_channels({"labels": manifest.labels, "regions": manifest.regions, **regions})
        aug = augmentation_rule(nd, fingerprint.get("foreground_layout"))
        rules = {
            "patch_size": patch, "whole_image": whole, "batch_size": batch,
            "network": {"name": "unet", "spatial_dims": nd, "in_channels": fingerprint["num_channels"],
                        "out_channels": n_out, **topo, "deep_supervision": True},
            "loss": {"name": "dice_ce", "batch_dice": True},
            "sampler": {"oversample_foreground": 0.33},
            "augmentation": aug,
            "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 3e-5, "schedule": "poly", "warmup_steps": 50},
            "inference": {"overlap": 0.5, "mirror_axes": list(aug["mirror_axes"]), "batch_size": 4},
            "validation": {"every": 1, "fraction_of_time": 0.1, "mirror": False},
            "postprocessing": {"decide_on_validation": True},
            **regions,
        }
        if coarse is not None:
            rules.update(target_spacing=coarse, lowres=True)
        field_of_view = field_of_view_rule(nd, fingerprint)
        if field_of_view is not None:
            rules["field_of_view_shape"] = field_of_view
        if device.type != "cuda" and measure:
            budget = budget_minutes if budget_minutes is not None else self.default_budget_minutes[nd]
            candidate = {**rules, "labels": manifest.labels, "regions": manifest.regions}
            rules["mixed_precision"], timings = self._cpu_precision(candidate, nd, spacing, device)
            if timings:
                rules["precision_step_seconds"] = timings
            candidate["mixed_precision"] = rules["mixed_precision"]
            base = self._base_features_for_budget(candidate, nd, spacing, device, float(budget))
            rules["network"].update(plan_unet(patch, spacing, base_features=base, max_stages=len(topo["strides"])))
        return rules

    def _cpu_precision(self, rules: dict, nd: int, spacing: list[float],
                       device: torch.device) -> tuple[str | bool, dict[str, float]]:
        """bfloat16 autocast when this CPU runs the narrowest U-Net's step measurably faster in it
        (:func:`medsight.training.precision.choose_cpu_precision`), else float32 (False)."""
        from medsight.planning.budget import measure_step_seconds
        from medsight.training.precision import choose_cpu_precision

        narrow = _with_base_width(rules, nd, spacing, BASE_FEATURES[0])
        return choose_cpu_precision(lambda p: measure_step_seconds(self, p, device, repeats=3, warmup=3), narrow)

    def _base_features_for_budget(self, rules: dict, nd: int, spacing: list[float], device: torch.device,
                                  budget_minutes: float) -> int:
        """The widest base width whose measured step affords ``MIN_STEPS[nd]`` steps (data loading and
        validation counted as the plan counts them)."""
        from medsight.planning.budget import measure_step_seconds, widest_that_fits

        def step_seconds(base: int) -> float:
            return measure_step_seconds(self, _with_base_width(rules, nd, spacing, base), device, repeats=3)

        budget_s = budget_minutes * 60.0 * 0.9 / 1.15
        index, _ = widest_that_fits(BASE_FEATURES, step_seconds, 1, budget_s, MIN_STEPS[nd])
        return BASE_FEATURES[index]

    def measure_epoch_parts(self, manifest: Manifest, plan: dict, device: torch.device,
                            fingerprint: dict | None = None) -> dict[str, float]:
        """Data, validation and checkpoint seconds timed on a real case (:func:`medsight.planning.budget.
        measure_epoch_parts`), and how many mirrorings the post-processing decision predicts with."""
        from medsight.planning.budget import measure_epoch_parts

        parts = measure_epoch_parts(self, manifest, plan, device, fingerprint)
        if parts:
            mirror_axes = plan.get("inference", {}).get("mirror_axes", [])
            parts["mirrorings"] = 2 ** len(mirror_axes) if decides_postprocessing(plan) else 0
        return parts

    def steps_per_epoch(self, plan: dict, num_train_cases: int) -> int:
        """A fixed number of patch batches per epoch (nnU-Net uses 250; a CPU epoch is shorter)."""
        return 50

    # -- training ---------------------------------------------------------------------------------
    def build_network(self, plan: dict) -> nn.Module:
        """The plan's U-Net, with one output per region (region training) or per label."""
        from medsight.nets import create_model

        cfg = {**plan["network"], "out_channels": output_channels(plan)}
        return create_model(cfg.pop("name"), **cfg)

    def build_loss(self, plan: dict) -> nn.Module:
        """The plan's loss (sigmoid per region with region training), summed over deep-supervision outputs."""
        from medsight.losses import DeepSupervisionLoss, build_loss

        cfg = {**plan["loss"], "sigmoid": region_training(plan)}
        return DeepSupervisionLoss(build_loss(cfg.pop("name"), **cfg))

    def training_batches(self, data: CachedCases, plan: dict, epoch_seed: tuple[int, ...], steps: int,
                         rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Patch batches: a third forced onto foreground, augmented; sample j of step s has its own generator.
        Targets are label maps, or multi-hot region maps (B, R, *patch) with region training."""
        from medsight.sampling import segmentation_batches

        yield from segmentation_batches(data, plan, epoch_seed, steps, rank=rank, world=world)

    def example_batch(self, plan: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Random batch of the plan's patch size (multi-hot region targets with region training)."""
        b, c = int(plan["batch_size"]), int(plan["network"]["in_channels"])
        x = torch.randn(b, c, *plan["patch_size"])
        k = output_channels(plan)
        if region_training(plan):
            return x, (torch.rand(b, k, *plan["patch_size"]) < 0.5).float()
        return x, torch.randint(0, k, (b, 1, *plan["patch_size"]))

    def _sliding(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device,
                 output: str, mirror: bool) -> np.ndarray:
        from medsight.inference.sliding_window import sliding_window_inference
        from medsight.training.precision import as_float, inference_autocast

        inf = plan.get("inference", {})
        for m in models:
            m.eval()

        def predictor(x: torch.Tensor) -> torch.Tensor:
            with inference_autocast(device, plan):
                outs = [m(x) for m in models]
            outs = [as_float(o[0] if isinstance(o, (list, tuple)) else o) for o in outs]
            return torch.stack(outs).mean(0)

        with torch.inference_mode():
            return sliding_window_inference(
                torch.from_numpy(np.ascontiguousarray(array)), predictor, plan["patch_size"],
                output_channels(plan), overlap=float(inf.get("overlap", 0.5)),
                batch_size=int(inf.get("batch_size", 4)),
                mirror_axes=inf.get("mirror_axes") if mirror else None, output=output,
                activation="sigmoid" if region_training(plan) else "softmax", device=device)

    def _label_map(self, model: nn.Module, array: np.ndarray, plan: dict, device: torch.device,
                   mirror: bool) -> np.ndarray:
        """The network-space label map of one case: softmax argmax, or region masks (sigmoid > 0.5) painted."""
        pred = self._sliding([model], array, plan, device, "argmax", mirror=mirror)
        if region_training(plan):
            return paint_regions(pred, plan["regions"], class_order(plan), dtype=np.int16)
        return pred

    def validate(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device) -> dict[str, float]:
        """Mean Dice over validation cases and trained structures (labels, or regions with region
        training; sliding window, network space), inside each case's evaluation mask when it has one
        (DRIVE's field of view), as ``evaluate`` scores; score = Dice."""
        mirror = bool(plan.get("validation", {}).get("mirror", False))
        dices = []
        for cid in data.ids:
            pred = self._label_map(model, data.image(cid, mmap=False), plan, device, mirror)
            ref = np.asarray(data.label(cid))[0]
            inside = _inside(data, cid)
            dices += [_dice(structure_mask(pred, vs) & inside, structure_mask(ref, vs) & inside)
                      for vs in trained_structures(plan).values()]
        model.train()
        d = float(np.mean(dices)) if dices else float("nan")
        return {"score": d, "dice": d}

    def finalize(self, model: nn.Module, data: CachedCases, plan: dict, device: torch.device, fold_dir: Path,
                 companions: dict | None = None) -> dict:
        """Decide post-processing on the validation cases, per trained structure (label value, or region
        name): keep the largest component (the k largest when the references come in k pieces), or remove
        components under a size, only where it raises the mean validation Dice (nnU-Net's rule, extended;
        :mod:`medsight.tasks.postprocessing`).

        The validation cases are predicted as ``predict`` will predict (mirrored as the plan's inference says),
        so the decision is made on the masks it will apply to: a Shenzhen network painted a blob below a lung
        only when mirrored, which unmirrored validation could not see (Dice 0.83 where 0.93 was due)."""
        from medsight.tasks.postprocessing import decide

        if not len(data) or not decides_postprocessing(plan):
            return {"largest_components": {}, "min_component_size": {}}
        preds, refs, voxel_volumes = [], [], []
        for cid in data.ids:
            inside = _inside(data, cid)
            preds.append(np.where(inside, self._label_map(model, data.image(cid, mmap=False), plan, device,
                                                          mirror=True), 0))
            refs.append(np.where(inside, np.asarray(data.label(cid))[0], 0))
            props = data.props(cid)  # a network pixel: an original pixel (size_unit) times the resampling
            voxel_volumes.append(size_unit(plan, props["original_shape"], props["spacing"]) * float(np.prod(
                [c / n for c, n in zip(props["cropped_shape"], props["network_shape"])])))
        largest, sizes, trials = {}, {}, {}
        for key, vs in trained_structures(plan).items():
            pairs = [(structure_mask(p, vs), structure_mask(r, vs)) for p, r in zip(preds, refs)]
            choice = decide(pairs, voxel_volumes)
            trials[key] = choice["dice"]
            if choice["components"]:
                largest[key] = choice["components"]
            elif choice["rule"] == "min_size":
                sizes[key] = choice["min_size"]
        return {"largest_components": largest, "min_component_size": sizes, "postprocessing_dice": trials}

    # -- inference --------------------------------------------------------------------------------
    def predict_case(self, models: list[nn.Module], array: np.ndarray, plan: dict, device: torch.device) -> np.ndarray:
        """Class probabilities (K, *s), or region probabilities (R, *s, sigmoid) with region training, in
        network space; mirrored test-time augmentation as planned."""
        return self._sliding(models, array, plan, device, "probabilities", mirror=True)

    def write_case(self, result: dict, out_dir: Path, plan: dict, decisions: dict) -> list[dict]:
        """The mask as ``<case><input extension>`` (see ``mask_extension``) in the input's geometry (and
        probabilities if asked); returns the case's rows of ``volumes.csv``."""
        from medsight.io import write_image
        from medsight.preprocessing.pipeline import restore_prediction

        values = sorted(int(v) for v in plan["labels"])
        if region_training(plan):
            probs = restore_region_probabilities(result["prediction"], result["props"])
            label = paint_regions(probs > 0.5, plan["regions"], class_order(plan), dtype=np.int16)
        else:
            probs = restore_prediction(result["prediction"], result["props"], kind="probabilities")
            label = np.asarray(values, dtype=np.int16)[np.argmax(probs, 0)]
        img = result["image"]
        apply_postprocessing(label, trained_structures(plan), decisions,
                             size_unit(plan, img.spatial_shape, img.spacing), structure_mask)
        dtype = np.uint8 if max(values) < 256 else np.uint16
        write_image(img.with_array(label[None].astype(dtype), channel_names=["label"]),
                    out_dir / f"{result['case']}{mask_extension(result['extension'])}",
                    reference=result.get("source"))
        if result.get("save_probabilities"):
            (out_dir / "probabilities").mkdir(exist_ok=True)
            extra = {"regions": np.array(list(plan["regions"]))} if region_training(plan) else {}
            np.savez_compressed(out_dir / "probabilities" / f"{result['case']}.npz",
                                probabilities=probs.astype(np.float16), **extra)
        return volume_rows(result["case"], label, img.spacing, plan, known_spacing=result.get("known_spacing", True))

    def write_summary(self, rows: list[dict], out_dir: Path, plan: dict, decisions: dict) -> list[Path]:
        """``volumes.csv``: per case and label, volume (mL) or area (mm^2 or pixels) and component count."""
        fields = ["case", "label", "name", "voxels", "components"]
        for r in rows:
            fields.extend(k for k in r if k not in fields)
        return [write_csv(out_dir / "volumes.csv", rows, fields)]

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, out_dir: Path, manifest: Manifest, case_ids: list[str] | None = None) -> dict:
        """Dice, IoU, HD95, MSD, sensitivity, precision per case and structure, with bootstrap intervals."""
        from medsight.datasets.loading import read_case_label
        from medsight.evaluation.bootstrap import bootstrap_ci
        from medsight.evaluation.segmentation import segmentation_metrics
        from medsight.io import read_image

        plan_like = {"labels": manifest.labels, "regions": manifest.regions}
        structs = structures(plan_like)
        files = {p.name.split(".")[0]: p for p in Path(out_dir).iterdir()
                 if p.is_file() and not p.name.endswith((".csv", ".json", ".html"))}
        per_case = []
        for case in manifest.cases:
            if case_ids is not None and case.id not in case_ids:
                continue
            if case.id not in files:
                continue
            pred = read_image(files[case.id])
            ref = read_case_label(case, manifest)
            if ref is None:
                continue
            if pred.spatial_shape != ref.spatial_shape:
                raise InputError(f"prediction has shape {pred.spatial_shape} but the reference has {ref.spatial_shape}",
                                 path=files[case.id])
            mask = None
            if case.eval_mask:
                em = read_image(case.eval_mask).array
                mask = em[0] > 0
            m = segmentation_metrics(pred.array[0], ref.array[0], ref.spacing, structs, eval_mask=mask)
            per_case.append({"case": case.id, "metrics": m})
        if not per_case:
            raise InputError("no prediction here matches a case of the reference dataset", path=out_dir,
                             fix="predict the dataset's cases first (file names = case ids)")
        summary: dict = {}
        for s in structs:
            for metric in ("dice", "iou", "hd95", "msd", "sensitivity", "precision"):
                vals = np.array([c["metrics"][s][metric] for c in per_case], float)
                point, lo, hi = bootstrap_ci(lambda v: float(np.mean(v)), vals) if len(vals) > 1 else (float(vals.mean()),) * 3
                summary.setdefault(s, {})[metric] = {"mean": float(vals.mean()), "median": float(np.median(vals)),
                                                     "ci95": [lo, hi]}
        dice_all = [np.mean([c["metrics"][s]["dice"] for s in structs]) for c in per_case]
        return {"task": "segmentation", "num_cases": len(per_case), "summary": summary,
                "mean_dice": float(np.mean(dice_all)), "per_case": per_case}


def _inside(data: CachedCases, case_id: str) -> np.ndarray | bool:
    """The case's network-space evaluation mask (*s), or True (everything counts)."""
    mask = data.eval_mask(case_id)
    return True if mask is None else mask[0]


def restore_region_probabilities(pred: np.ndarray, props: dict) -> np.ndarray:
    """Network-space region probabilities (R, *s) on the case's original grid: resampled linearly,
    0 (no region) where the crop removed the border."""
    from medsight.preprocessing.crop import paste
    from medsight.preprocessing.resample import resample_image

    restored = resample_image(pred.astype(np.float32, copy=False), tuple(props["cropped_shape"]), order=1)
    return paste(restored, [tuple(b) for b in props["bbox"]], tuple(props["original_shape"]), fill=0.0)


def volume_rows(case: str, label: np.ndarray, spacing: tuple[float, ...], plan: dict, known_spacing: bool = True) -> list[dict]:
    """Per label: volume in mL (3D) or area in mm^2 (2D; pixels when the spacing is unknown) and lesion count."""
    nd = label.ndim
    voxel = float(np.prod(spacing))
    rows = []
    for v, name in sorted(plan["labels"].items(), key=lambda kv: int(kv[0])):
        v = int(v)
        if v == 0:
            continue
        m = label == v
        n_vox = int(m.sum())
        _, n_comp = ndimage.label(m)
        row = {"case": case, "label": v, "name": name, "voxels": n_vox, "components": int(n_comp)}
        if nd == 3:
            row["volume_ml"] = round(n_vox * voxel / 1000.0, 4)
        elif known_spacing:
            row["area_mm2"] = round(n_vox * voxel, 3)
        else:
            row["area_pixels"] = n_vox
        rows.append(row)
    return rows

