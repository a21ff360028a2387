"""Input pipeline speed: 3D training batches (2 patches of 96^3, 2 channels) with nnU-Net's default augmentation.

medsight (sampler + TrainingAugmentation) against MONAI dictionary transforms, batchgeneratorsv2 (nnU-Net's
own transforms, fed the way nnU-Net's data loader feeds them) and TorchIO, in one run, one process, one
torch thread, on the 4 BraTS example cases (FLAIR + T1c, OTMultiClass labels) held in memory.
Each system makes the same number of batches after warm-up; systems take turns in rounds so that a
change in the machine's load hits them alike. Prints a table last and writes
benchmarks/results/input_pipeline.json.

    python benchmarks/input_pipeline.py            # full run
    python benchmarks/input_pipeline.py --quick    # smoke test (a few batches)
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SHARED_DATA, format_table, library_versions, load_average, pin_threads, write_results  # noqa: E402

pin_threads(1)  # before numpy/torch are imported, so their pools start with one thread

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PATCH = (96, 96, 96)
BATCH = 2
P_FOREGROUND = 1 / 3
ROTATION = (-30 / 180 * math.pi, 30 / 180 * math.pi)
CHANNEL_FILES = ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")
LABEL_FILE = "OTMultiClass.nii.gz"

# What every pipeline does, with nnU-Net v2's probabilities (nnUNetTrainer.get_training_transforms).
COMMON_RECIPE = [
    "patch 96^3 from a random case; 1/3 of patches (each with probability 1/3) centred on a tumour voxel "
    "(class chosen uniformly among the classes present), the rest anywhere / on background",
    "rotation p=0.2 (each axis +-30 deg), scaling p=0.2 (0.7-1.4), mirroring p=0.5 per axis",
    "Gaussian noise p=0.1 (std 0-0.1), Gaussian blur p=0.2 (sigma 0.5-1)",
    "brightness x(0.75-1.25) p=0.15, contrast p=0.15, low resolution p=0.25 (0.5-1)",
    "inverted gamma p=0.1, gamma p=0.3 (0.7-1.5, mean/std kept)",
    "image linear, label nearest (batchgeneratorsv2: nnU-Net's label interpolation, per-label linear)",
]


def load_cases(folder: Path) -> list[dict[str, Any]]:
    """The BraTS example cases: image (2, X, Y, Z) float32 and label (1, X, Y, Z) uint8, C-ordered in memory."""
    cases = []
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        image = np.stack([np.asarray(nib.load(case_dir / f).dataobj, dtype=np.float32) for f in CHANNEL_FILES])
        label = np.asarray(nib.load(case_dir / LABEL_FILE).dataobj).astype(np.uint8)[None]
        cases.append({"id": case_dir.name, "image": np.ascontiguousarray(image), "label": np.ascontiguousarray(label)})
    if not cases:
        raise SystemExit(f"no BraTS cases in {folder}")
    return cases


# -- medsight ----------------------------------------------------------------------------------------
class MedsightPipeline:
    """medsight.sampling.BatchLoader + medsight.augmentation.TrainingAugmentation (nnU-Net defaults)."""

    name = "medsight"

    def __init__(self, cases: list[dict], seed: int):
        from medsight.augmentation import TrainingAugmentation
        from medsight.sampling import BatchLoader, PatchSource, sample_class_locations

        sources = [PatchSource(c["image"], c["label"], sample_class_locations(c["label"], seed=seed)) for c in cases]
        self.loader = BatchLoader(sources, PATCH, BATCH, TrainingAugmentation(3), oversample_foreground=P_FOREGROUND,
                                  oversample_mode="probabilistic", seed=seed)
        self.index = 0
        self.description = {
            "library": "medsight", "version": library_versions(["medsight"])["medsight"],
            "steps": ["BatchLoader: class locations precomputed once per case (<= 10000 voxels per class); patch "
                      "cut straight from the case", "TrainingAugmentation(3) defaults: one combined affine "
                      "(rotation, scaling, mirroring) resampled once (image grid_sample linear, label nearest by "
                      "index gathering); plain crop when no rotation/scaling; intensity transforms fused in place"],
        }

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.index += 1
        return self.loader.batch(0, self.index)


# -- MONAI -------------------------------------------------------------------------------------------
class MonaiPipeline:
    """MONAI dictionary transforms reproducing the same recipe (fg/bg indices precomputed once per case)."""

    name = "MONAI"

    def __init__(self, cases: list[dict], seed: int):
        import monai
        import monai.transforms as T

        monai.data.set_track_meta(False)  # MONAI's advice for speed: plain tensors, no metadata
        keys = ["image", "label"]
        index_maker = T.FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg")
        self.cases = [index_maker({"image": torch.from_numpy(c["image"]), "label": torch.from_numpy(c["label"])})
                      for c in cases]
        self.transform = T.Compose([
            T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=PATCH, pos=1, neg=2, num_samples=1,
                                     fg_indices_key="label_fg", bg_indices_key="label_bg"),
            T.RandRotated(keys, range_x=ROTATION[1], range_y=ROTATION[1], range_z=ROTATION[1], prob=0.2,
                          mode=("bilinear", "nearest"), padding_mode="zeros", keep_size=True),
            T.RandZoomd(keys, prob=0.2, min_zoom=0.7, max_zoom=1.4, mode=("trilinear", "nearest"),
                        padding_mode="constant", keep_size=True),
            T.RandFlipd(keys, prob=0.5, spatial_axis=0),
            T.RandFlipd(keys, prob=0.5, spatial_axis=1),
            T.RandFlipd(keys, prob=0.5, spatial_axis=2),
            T.RandGaussianNoised("image", prob=0.1, mean=0.0, std=0.1),
            T.RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2),
            T.RandScaleIntensityd("image", factors=0.25, prob=0.15, channel_wise=True),
            T.RandScaleIntensityFixedMeand("image", factors=0.25, prob=0.15, preserve_range=True, fixed_mean=True,
                                           channel_wise=True),
            T.RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0)),
            T.RandAdjustContrastd("image", prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
            T.RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5), retain_stats=True),
        ]).set_random_state(seed)
        self.rng = np.random.default_rng(seed)
        self.description = {
            "library": "monai", "version": monai.__version__, "track_meta": False,
            "steps": ["FgBgToIndicesd once per case (cached)", "RandCropByPosNegLabeld(pos=1, neg=2) 96^3",
                      "RandRotated(+-30 deg, p=0.2) + RandZoomd(0.7-1.4, p=0.2) on the 96^3 patch",
                      "RandFlipd x3 (p=0.5)", "RandGaussianNoised(p=0.1, std<=0.1)",
                      "RandGaussianSmoothd(p=0.2, sigma 0.5-1, all channels)",
                      "RandScaleIntensityd(+-0.25, p=0.15)",
                      "RandScaleIntensityFixedMeand(+-0.25, preserve_range, p=0.15)",
                      "RandSimulateLowResolutiond(p=0.25, 0.5-1, all channels)",
                      "RandAdjustContrastd(invert_image, retain_stats, p=0.1)",
                      "RandAdjustContrastd(retain_stats, p=0.3)",
                      "torch.stack of 2 samples"],
        }

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        samples = [self.transform(self.cases[int(self.rng.integers(len(self.cases)))])[0] for _ in range(BATCH)]
        return (torch.stack([torch.as_tensor(s["image"]) for s in samples]),
                torch.stack([torch.as_tensor(s["label"]) for s in samples]))


# -- batchgeneratorsv2 (nnU-Net) ---------------------------------------------------------------------
def nnunet_initial_patch_size(patch: tuple[int, ...], max_angle: float, scale_low: float = 0.85) -> tuple[int, ...]:
    """nnU-Net's rule for the larger crop fed to SpatialTransform: rotate the patch about each axis alone,
    keep the largest extent, divide by the lower scale bound nnU-Net passes (0.85)."""
    extent = np.array(patch, dtype=float)
    corners = np.array(list(itertools.product(*[(-p / 2, p / 2) for p in patch])))
    for axis in range(3):
        c, s = math.cos(max_angle), math.sin(max_angle)
        a, b = [d for d in range(3) if d != axis]
        rot = np.eye(3)
        rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
        rotated = corners @ rot.T
        extent = np.maximum(extent, rotated.max(0) - rotated.min(0))
    return tuple(int(e / scale_low) for e in extent)


class BatchgeneratorsV2Pipeline:
    """nnU-Net v2's default training transforms from batchgeneratorsv2, fed like nnU-Net's data loader."""

    name = "batchgeneratorsv2"

    def __init__(self, cases: list[dict], seed: int):
        from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
        from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
        from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
        from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
        from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
        from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
        from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
        from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
        from batchgeneratorsv2.transforms.utils.random import RandomTransform

        from medsight.sampling import PatchSampler, sample_class_locations

        np.random.seed(seed)
        torch.manual_seed(seed)
        self.cases = [dict(c, locations=sample_class_locations(c["label"], seed=seed)) for c in cases]
        self.initial_patch = nnunet_initial_patch_size(PATCH, ROTATION[1])
        # nnU-Net's data loader: a random (or foreground-centred) crop of the initial patch size, zero padded
        self.sampler = PatchSampler(PATCH, P_FOREGROUND, rng=seed, crop_size=self.initial_patch)
        self.rng = np.random.default_rng(seed)
        self.transform = ComposeTransforms([
            SpatialTransform(PATCH, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
                             p_rotation=0.2, rotation=ROTATION, p_scaling=0.2, scaling=(0.7, 1.4),
                             p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False),
            RandomTransform(GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_channel=1, synchronize_channels=True),
                            apply_probability=0.1),
            RandomTransform(GaussianBlurTransform(blur_sigma=(0.5, 1.0), synchronize_channels=False,
                                                  synchronize_axes=False, p_per_channel=0.5, benchmark=True),
                            apply_probability=0.2),
            RandomTransform(MultiplicativeBrightnessTransform(multiplier_range=BGContrast((0.75, 1.25)),
                                                              synchronize_channels=False, p_per_channel=1),
                            apply_probability=0.15),
            RandomTransform(ContrastTransform(contrast_range=BGContrast((0.75, 1.25)), preserve_range=True,
                                              synchronize_channels=False, p_per_channel=1), apply_probability=0.15),
            RandomTransform(SimulateLowResolutionTransform(scale=(0.5, 1), synchronize_channels=False,
                                                           synchronize_axes=True, ignore_axes=None,
                                                           allowed_channels=None, p_per_channel=0.5),
                            apply_probability=0.25),
            RandomTransform(GammaTransform(gamma=BGContrast((0.7, 1.5)), p_invert_image=1, synchronize_channels=False,
                                           p_per_channel=1, p_retain_stats=1), apply_probability=0.1),
            RandomTransform(GammaTransform(gamma=BGContrast((0.7, 1.5)), p_invert_image=0, synchronize_channels=False,
                                           p_per_channel=1, p_retain_stats=1), apply_probability=0.3),
            MirrorTransform(allowed_axes=(0, 1, 2)),
        ])
        self.description = {
            "library": "batchgeneratorsv2", "version": library_versions(["batchgeneratorsv2"])["batchgeneratorsv2"],
            "steps": [f"crop of nnU-Net's initial patch size {self.initial_patch} (nnU-Net's rule: per-axis "
                      "rotation extent / 0.85), foreground-centred with probability 1/3 (medsight.PatchSampler does "
                      "the crop, as nnU-Net's data loader would)",
                      "nnUNetTrainer.get_training_transforms (3D, no regions, no deep supervision): SpatialTransform "
                      "(p_rotation 0.2, p_scaling 0.2, centre crop to 96^3, label by per-label linear interpolation), "
                      "noise 0.1, blur 0.2, brightness 0.15, contrast 0.15, low resolution 0.25, gamma inverted 0.1, "
                      "gamma 0.3, mirror", "torch.stack of 2 samples"],
        }

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(BATCH):
            case = self.cases[int(self.rng.integers(len(self.cases)))]
            img, lbl = self.sampler.sample(case["image"], case["label"], case["locations"])
            out = self.transform(image=torch.from_numpy(img), segmentation=torch.from_numpy(lbl.astype(np.int16)))
            images.append(out["image"])
            labels.append(out["segmentation"])
        return torch.stack(images), torch.stack(labels)


# -- TorchIO -----------------------------------------------------------------------------------------
def _tio_brightness(x: torch.Tensor) -> torch.Tensor:
    factors = torch.empty(x.shape[0], *([1] * (x.ndim - 1))).uniform_(0.75, 1.25)
    return x * factors


def _tio_contrast(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for c in range(x.shape[0]):
        mean, (lo, hi) = x[c].mean(), torch.aminmax(x[c])
        factor = float(torch.empty(1).uniform_(0.75, 1.25))
        out[c] = ((x[c] - mean) * factor + mean).clamp(lo, hi)
    return out


def _tio_inverted_gamma(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for c in range(x.shape[0]):
        y = -x[c]
        mean, std = y.mean(), y.std()
        lo, hi = torch.aminmax(y)
        gamma = float(torch.empty(1).uniform_(0.7, 1.5))
        z = ((y - lo) / (hi - lo).clamp(min=1e-7)) ** gamma
        out[c] = -((z - z.mean()) / z.std().clamp(min=1e-7) * std + mean)
    return out


class TorchioPipeline:
    """TorchIO: LabelSampler patches (1/3 tumour) and its random transforms applied to each patch."""

    name = "TorchIO"

    def __init__(self, cases: list[dict], seed: int):
        import torchio as tio

        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        classes = sorted({int(v) for c in cases for v in np.unique(c["label"]) if v > 0})
        probabilities = {0: 2 / 3, **{k: 1 / 3 / len(classes) for k in classes}}
        sampler = tio.LabelSampler(PATCH, label_name="label", label_probabilities=probabilities)
        subjects = [tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(c["image"])),
                                label=tio.LabelMap(tensor=torch.from_numpy(c["label"]))) for c in cases]
        self.patch_streams = [sampler(s) for s in subjects]  # one infinite stream per case: the map is made once
        self.transform = tio.Compose([
            tio.RandomAffine(scales=0, degrees=30, default_pad_value=0, p=0.2),
            tio.RandomAffine(scales=(0.7, 1.4), degrees=0, isotropic=True, default_pad_value=0, p=0.2),
            tio.RandomFlip(axes=(0, 1, 2), flip_probability=0.5),
            tio.RandomNoise(mean=0, std=(0, 0.1), p=0.1),
            tio.RandomBlur(std=(0.5, 1.0), p=0.2),
            tio.Lambda(_tio_brightness, types_to_apply=[tio.INTENSITY], p=0.15),
            tio.Lambda(_tio_contrast, types_to_apply=[tio.INTENSITY], p=0.15),
            tio.RandomAnisotropy(axes=(0, 1, 2), downsampling=(1.0, 2.0), p=0.25),
            tio.Lambda(_tio_inverted_gamma, types_to_apply=[tio.INTENSITY], p=0.1),
            tio.RandomGamma(log_gamma=(math.log(0.7), math.log(1.5)), p=0.3),
        ])
        self.description = {
            "library": "torchio", "version": tio.__version__,
            "steps": ["LabelSampler 96^3, label_probabilities {0: 2/3, each tumour class: 1/3 shared}; one patch "
                      "stream per case so the probability map is computed once", "RandomAffine(degrees 30, p=0.2) + "
                      "RandomAffine(isotropic scales 0.7-1.4, p=0.2) (SimpleITK resampling)",
                      "RandomFlip(0, 1, 2; 0.5 each)", "RandomNoise(std 0-0.1, p=0.1)", "RandomBlur(0.5-1, p=0.2)",
                      "Lambda brightness x(0.75-1.25) p=0.15 and contrast p=0.15 (TorchIO has neither)",
                      "RandomAnisotropy(downsampling 1-2, p=0.25) for low resolution (one axis, TorchIO's version)",
                      "Lambda inverted gamma p=0.1 (mean/std kept)", "RandomGamma(0.7-1.5, p=0.3; TorchIO does not "
                      "keep mean/std)", "torch.stack of 2 samples"],
        }

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(BATCH):
            patch = next(self.patch_streams[int(self.rng.integers(len(self.patch_streams)))])
            out = self.transform(patch)
            images.append(out["image"].data)
            labels.append(out["label"].data)
        return torch.stack(images), torch.stack(labels)


SYSTEMS: list[Callable[[list[dict], int], Any]] = [MedsightPipeline, MonaiPipeline, BatchgeneratorsV2Pipeline,
                                                   TorchioPipeline]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build every pipeline, warm up, time them in interleaved rounds, return the figures."""
    data_dir = Path(args.data)
    t0 = time.perf_counter()
    cases = load_cases(data_dir)
    print(f"loaded {len(cases)} cases in {time.perf_counter() - t0:.1f} s: "
          f"image {cases[0]['image'].shape}, label {cases[0]['label'].shape}", flush=True)
    systems = {}
    for make in SYSTEMS:
        if make.name not in args.systems:
            continue
        t0 = time.perf_counter()
        system = make(cases, args.seed)
        systems[system.name] = system
        print(f"{system.name}: set up in {time.perf_counter() - t0:.1f} s", flush=True)
    stats = {name: {"seconds": 0.0, "cpu_seconds": 0.0, "batches": 0, "patches_with_tumour": 0, "shape_ok": True}
             for name in systems}
    for name, system in systems.items():
        for _ in range(args.warmup):
            system()
    load_before = load_average()
    for round_index in range(args.rounds):
        for name, system in systems.items():
            for _ in range(args.batches_per_round):
                start, cpu_start = time.perf_counter(), time.process_time()
                images, labels = system()
                stats[name]["seconds"] += time.perf_counter() - start
                stats[name]["cpu_seconds"] += time.process_time() - cpu_start
                stats[name]["batches"] += 1
                stats[name]["patches_with_tumour"] += int((labels.reshape(BATCH, -1) > 0).any(1).sum())
                stats[name]["shape_ok"] &= (tuple(images.shape) == (BATCH, 2, *PATCH)
                                            and tuple(labels.shape) == (BATCH, 1, *PATCH))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{n} {s['batches'] / s['seconds']:.2f} b/s" for n, s in stats.items()), flush=True)
    results = {}
    for name, s in stats.items():
        bps = s["batches"] / s["seconds"]
        results[name] = {"batches": s["batches"], "seconds": round(s["seconds"], 3), "batches_per_s": round(bps, 3),
                         "patches_per_s": round(bps * BATCH, 3), "cpu_seconds": round(s["cpu_seconds"], 3),
                         "batches_per_cpu_s": round(s["batches"] / s["cpu_seconds"], 3),
                         "share_of_patches_with_tumour": round(s["patches_with_tumour"] / (s["batches"] * BATCH), 3),
                         "output_shapes_ok": s["shape_ok"], "pipeline": systems[name].description}
    ours = results["medsight"]["batches_per_s"]
    ratios = {f"medsight_vs_{name}": round(ours / r["batches_per_s"], 2)
              for name, r in results.items() if name != "medsight"}
    ours_cpu = results["medsight"]["batches_per_cpu_s"]
    cpu_ratios = {f"medsight_vs_{name}": round(ours_cpu / r["batches_per_cpu_s"], 2)
                  for name, r in results.items() if name != "medsight"}
    return {
        "mode": "quick" if args.quick else "full",
        "data": {"folder": str(data_dir), "cases": [c["id"] for c in cases], "channels": list(CHANNEL_FILES),
                 "label": LABEL_FILE, "image_shape": list(cases[0]["image"].shape),
                 "held": "in memory, loaded once with nibabel, C-ordered float32 / uint8, shared by all systems"},
        "setup": {"patch": list(PATCH), "batch_size": BATCH, "foreground_share": P_FOREGROUND,
                  "torch_threads": torch.get_num_threads(), "processes": 1, "seed": args.seed,
                  "warmup_batches": args.warmup, "rounds": args.rounds, "batches_per_round": args.batches_per_round,
                  "recipe": COMMON_RECIPE},
        "load_average_before_timing": load_before, "load_average_after_timing": load_average(),
        "results": results, "ratios": ratios,
        "ratios_by_cpu_time": cpu_ratios,
        "notes": "batches_per_s is wall-clock throughput (the headline figure); batches_per_cpu_s divides by the "
                 "process CPU time, which a busy shared machine disturbs less",
    }


def main() -> None:
    """Parse arguments, run, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 warm-up batch, 1 round of 2 batches")
    parser.add_argument("--data", default=str(SHARED_DATA / "brats_examples"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches-per-round", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--systems", nargs="+", default=[m.name for m in SYSTEMS], choices=[m.name for m in SYSTEMS],
                        help="run only these (medsight is always run: the ratios need it)")
    args = parser.parse_args()
    args.systems = ["medsight", *[n for n in args.systems if n != "medsight"]]
    results_dir = None  # benchmarks/results
    if args.quick:  # a smoke test never replaces the quoted results: it writes to the git-ignored benchmarks/work
        args.rounds, args.batches_per_round, args.warmup = 1, 2, 1
        results_dir = Path(__file__).resolve().parent / "work"
    if set(args.systems) != {m.name for m in SYSTEMS}:
        results_dir = Path(__file__).resolve().parent / "work"  # a partial run is not the quoted result either
    warnings.filterwarnings("ignore", category=UserWarning)
    payload = run(args)
    path = write_results("input_pipeline", payload, results_dir)
    rows = []
    ours = payload["results"]["medsight"]["batches_per_s"]
    for name, r in payload["results"].items():
        rows.append([name, r["batches"], r["batches_per_s"], r["patches_per_s"], r["batches_per_cpu_s"],
                     r["share_of_patches_with_tumour"],
                     f"{ours / r['batches_per_s']:.2f}x" if name != "medsight" else "-"])
    print(f"\nwrote {path}")
    print(f"load average before/after timing: {payload['load_average_before_timing']} / "
          f"{payload['load_average_after_timing']}")
    print(format_table(["system", "batches", "batches/s", "patches/s", "batches/cpu-s", "tumour share",
                        "medsight speed-up"], rows))


if __name__ == "__main__":
    main()
