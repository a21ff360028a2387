"""Sliding-window inference: medsight vs MONAI on a CT-sized volume, each in its own process.

A BraTS case's FLAIR + T1c (240 x 240 x 155) is resampled to 512 x 512 x 300 (trilinear), and the
same seeded random 3D U-Net (4 classes) predicts it window by window (roi 96^3, overlap 0.5,
Gaussian blending, no mirroring) through ``medsight.inference.sliding_window_inference`` and
``monai.inferers.sliding_window_inference``. Each system runs in a fresh subprocess so that its
peak memory (``ru_maxrss``) is its own; the figure compared is the memory it adds on top of the
loaded input. Both produce a uint8 label map (MONAI's float output is argmaxed slab by slab so that
post-processing does not inflate its figure). Outputs are compared on the full label maps and on
the logits of a sub-block.

    python benchmarks/sliding_window.py           # full run (a few minutes on 2 cores)
    python benchmarks/sliding_window.py --quick   # 192 x 192 x 128 smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SHARED_DATA, format_table, library_versions, load_average, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASE = "brats_examples/brats_2013_pat0003_1"
FULL_SHAPE, QUICK_SHAPE = (512, 512, 300), (192, 192, 128)
ROI, OVERLAP, NUM_CLASSES, SEED = (96, 96, 96), 0.5, 4, 0
NETWORK = {
    "class": "monai.networks.nets.UNet",
    "spatial_dims": 3,
    "in_channels": 2,
    "out_channels": NUM_CLASSES,
    "channels": [8, 16, 32, 64],
    "strides": [2, 2, 2],
    "num_res_units": 1,
    "weights": f"random, torch.manual_seed({SEED}) (timing and memory do not need training)",
}
SUB_BLOCK = (slice(160, 352), slice(160, 352), slice(80, 224))  # logits compared here (full run)
QUICK_SUB_BLOCK = (slice(32, 160), slice(32, 160), slice(16, 112))


def build_network():
    """The seeded random MONAI U-Net both systems run."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(SEED)
    config = {k: v for k, v in NETWORK.items() if k not in ("class", "weights")}
    return UNet(**config).eval()


def make_volume(shape: tuple[int, int, int]) -> np.ndarray:
    """FLAIR + T1c of the BraTS case resampled (trilinear) to ``shape``: (2, *shape) float32."""
    import nibabel as nib
    import torch

    folder = SHARED_DATA / CASE
    channels = [
        np.asarray(nib.load(folder / f"{name}_subtrMeanDivStd.nii.gz").dataobj, dtype=np.float32)
        for name in ("Flair", "T1c")
    ]
    source = torch.from_numpy(np.stack(channels))[None]
    resized = torch.nn.functional.interpolate(source, size=shape, mode="trilinear", align_corners=False)
    return resized[0].numpy()


def _status_mb(field: str) -> float:
    """A /proc/self/status memory field in MB."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024


def predict_labels(system: str, volume, predictor, batch_size: int) -> tuple[np.ndarray, float]:
    """One system's uint8 label map of ``volume`` and the seconds its windows took (before the argmax)."""
    import torch

    start = time.perf_counter()
    if system == "medsight":
        from medsight.inference import sliding_window_inference

        labels = sliding_window_inference(
            volume, predictor, ROI, NUM_CLASSES, overlap=OVERLAP, batch_size=batch_size, output="argmax"
        )
        return labels, time.perf_counter() - start
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        logits = sliding_window_inference(
            volume[None], ROI, batch_size, predictor, overlap=OVERLAP, mode="gaussian", sigma_scale=0.125
        )[0]
        seconds_windows = time.perf_counter() - start
        labels = np.empty(logits.shape[1:], dtype=np.uint8)
        for z in range(0, labels.shape[0], 8):  # slab-wise numpy argmax: no int64 volume, and
            labels[z : z + 8] = logits[:, z : z + 8].numpy().argmax(0)  # 5x faster than torch's argmax(0)
    return labels, seconds_windows


def run_child(system: str, work: Path, threads: int, batch_size: int) -> dict:
    """Load the volume, run one system, save its label map; return timings and memory figures.

    After the measured run, the same windows go through a constant predictor (a copy of fixed
    logits): that times the stitching alone, the only part where the two systems differ.
    """
    import torch

    torch.set_num_threads(threads)
    net = build_network()
    volume = torch.from_numpy(np.load(work / "volume.npy"))
    rss_loaded = _status_mb("VmRSS")
    with torch.inference_mode():  # the network's own working set, and its first-call setup
        net(torch.zeros(batch_size, volume.shape[0], *ROI))
    hwm_network = _status_mb("VmHWM")

    start = time.perf_counter()
    labels, seconds_windows = predict_labels(system, volume, net, batch_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    np.save(work / f"labels_{system}.npy", labels)
    del labels

    fixed_logits = torch.randn(batch_size, NUM_CLASSES, *ROI, generator=torch.Generator().manual_seed(SEED))
    start = time.perf_counter()  # MONAI scales the predictor's output in place: hand out copies
    predict_labels(system, volume, lambda batch: fixed_logits[: batch.shape[0]].clone(), batch_size)
    seconds_stitching = time.perf_counter() - start
    return {
        "seconds": seconds,
        "seconds_windows": seconds_windows,
        "seconds_stitching_only": seconds_stitching,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak,
        "added_mb": peak - rss_loaded,
        "network_working_set_mb": hwm_network - rss_loaded,
        "added_beyond_network_mb": peak - hwm_network,
    }


def spawn(system: str, work: Path, threads: int, batch_size: int) -> dict:
    """Run one system in a fresh Python process and return its figures."""
    command = [sys.executable, __file__, "--child", system, "--work", str(work),
               "--threads", str(threads), "--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{system} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(repeats: list[dict]) -> dict:
    """Fastest time and largest memory figures over the repeats, with every run kept."""
    summary = {key: min(run[key] for run in repeats) for key in repeats[0] if key.startswith("seconds")}
    for key in repeats[0]:
        if key not in summary:
            summary[key] = max(run[key] for run in repeats)
    summary["runs"] = repeats
    return summary


def compare_sub_block_logits(volume: np.ndarray, block: tuple[slice, ...], batch_size: int) -> dict:
    """Max abs difference of both systems' logits on a sub-block of the volume (run in this process)."""
    import torch
    from monai.inferers import sliding_window_inference as monai_sliding_window

    from medsight.inference import sliding_window_inference

    net = build_network()
    sub = torch.from_numpy(np.ascontiguousarray(volume[(slice(None), *block)]))
    ours = sliding_window_inference(sub, net, ROI, NUM_CLASSES, overlap=OVERLAP, batch_size=batch_size, output="logits")
    with torch.inference_mode():
        theirs = monai_sliding_window(sub[None], ROI, batch_size, net, overlap=OVERLAP, mode="gaussian")[0].numpy()
    return {
        "sub_block": [[s.start, s.stop] for s in block],
        "logits_max_abs_diff": float(np.abs(ours - theirs).max()),
        "logits_max_abs": float(np.abs(theirs).max()),
    }


def main() -> None:
    """Parse arguments, run both systems, compare, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke test on {QUICK_SHAPE}")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per system (time: the fastest)")
    parser.add_argument("--child", choices=["medsight", "monai"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.work, args.threads, args.batch_size)))
        return

    import torch

    from medsight.inference import window_count

    torch.set_num_threads(args.threads)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    block = QUICK_SUB_BLOCK if args.quick else SUB_BLOCK
    with tempfile.TemporaryDirectory(prefix="medsight_swi_") as tmp:
        work = Path(tmp)
        volume = make_volume(shape)
        np.save(work / "volume.npy", volume)
        load_before = load_average()
        runs = {"medsight": [], "monai": []}
        for _ in range(args.repeats):  # alternate, so a burst of load from elsewhere hits both
            for system in runs:
                runs[system].append(spawn(system, work, args.threads, args.batch_size))
        load_after = load_average()
        ours, theirs = (np.load(work / f"labels_{s}.npy") for s in ("medsight", "monai"))
        agreement = {
            "argmax_fraction_equal": float(np.mean(ours == theirs)),
            "argmax_voxels_differing": int(np.sum(ours != theirs)),
            "label_counts_monai": np.bincount(theirs.ravel(), minlength=NUM_CLASSES).tolist(),
        }
        agreement.update(compare_sub_block_logits(volume, block, args.batch_size))

    med, mon = summarize(runs["medsight"]), summarize(runs["monai"])
    input_mb = volume.nbytes / 2**20
    ratios = {
        "time_medsight_over_monai": med["seconds"] / mon["seconds"],
        "stitching_time_medsight_over_monai": med["seconds_stitching_only"] / mon["seconds_stitching_only"],
        "added_memory_medsight_over_monai": med["added_mb"] / mon["added_mb"],
        "added_beyond_network_medsight_over_monai": med["added_beyond_network_mb"] / mon["added_beyond_network_mb"],
    }
    results = {
        "libraries": library_versions(["torch", "monai", "numpy"]),
        "load_average_before_after": [load_before, load_after],
        "data": {
            "case": CASE,
            "channels": ["Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd"],
            "resampled_shape": list(shape),
            "resampling": "torch interpolate, trilinear, align_corners=False, from 240 x 240 x 155",
            "input_mb": input_mb,
        },
        "settings": {
            "roi": list(ROI),
            "overlap": OVERLAP,
            "blending": "gaussian, sigma_scale 0.125",
            "mirroring": False,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "windows": window_count(shape, ROI, OVERLAP),
            "quick": args.quick,
            "repeats": args.repeats,
            "time": "fastest of the alternating repeats, each system in a fresh process",
            "memory": "ru_maxrss of a fresh process minus its RSS after loading the input (MB = 2^20 bytes); "
            "largest over the repeats",
        },
        "network": NETWORK,
        "medsight": med,
        "monai": mon,
        "agreement": agreement,
        "ratios": ratios,
        "goals": {
            "no_slower_than_monai": ratios["time_medsight_over_monai"] <= 1.0,
            "stitching_no_slower_than_monai": ratios["stitching_time_medsight_over_monai"] <= 1.0,
            "at_most_half_monai_added_memory": ratios["added_memory_medsight_over_monai"] <= 0.5,
        },
    }
    path = None if args.quick else write_results("sliding_window", results)  # a smoke test records nothing

    rows = [
        ("time (s)", "seconds", ratios["time_medsight_over_monai"]),
        ("  of which windows (s)", "seconds_windows", None),
        ("stitching only (s)", "seconds_stitching_only", ratios["stitching_time_medsight_over_monai"]),
        ("added memory (MB)", "added_mb", ratios["added_memory_medsight_over_monai"]),
        ("  network working set (MB)", "network_working_set_mb", None),
        ("  beyond network (MB)", "added_beyond_network_mb", ratios["added_beyond_network_medsight_over_monai"]),
        ("peak RSS (MB)", "peak_rss_mb", None),
    ]
    table = [(label, med[key], mon[key], "" if r is None else f"{r:.3f}") for label, key, r in rows]
    print(f"\nsliding window, volume {shape} x 2 channels ({input_mb:.0f} MB), roi {ROI}, overlap {OVERLAP}, "
          f"{results['settings']['windows']} windows, {args.threads} threads, load {load_before}")
    print(format_table(["", "medsight", "MONAI", "medsight / MONAI"], table))
    print(f"argmax maps equal: {agreement['argmax_fraction_equal']:.6f} "
          f"({agreement['argmax_voxels_differing']} voxels differ); sub-block logits max |diff| "
          f"{agreement['logits_max_abs_diff']:.2e}")
    print(f"written {path.relative_to(ROOT)}" if path else "quick run: nothing written")


if __name__ == "__main__":
    main()
