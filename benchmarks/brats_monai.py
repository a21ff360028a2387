"""The issue's MONAI 3D U-Net recipe on the BraTS examples, leave-one-out, beside medsight's brats.json.

The segmentation issue quotes a MONAI 3D U-Net (channels 16-256, 2 mm, 64^3 patches, DiceCE, 30 minutes)
trained on these four cases that reached whole-tumour Dice 0.85 on two *other* cases. This runs that recipe
on the protocol medsight is measured on here (each case predicted by a network trained on the other three,
30 minutes a fold, two folds side by side, one core each), so the two systems' figures share their data:

- MONAI, as a MONAI user writes it: ``LoadImaged`` (FLAIR + T1c as two channels), ``Orientationd`` RAS,
  ``Spacingd`` 2 mm (bilinear / nearest), ``NormalizeIntensityd`` (nonzero, channel-wise),
  ``RandCropByPosNegLabeld`` 64^3 (pos 1, neg 1, 4 patches of one case a step), ``RandFlipd`` on each
  axis, ``RandScaleIntensityd`` / ``RandShiftIntensityd`` 0.1; the BraTS regions (whole tumour 1-4, core 1, 3,
  4, enhancing 4) as three sigmoid channels; ``UNet(3D, 2 -> 3, channels 16-256, strides 2, 2 residual
  units)``, ``DiceCELoss(sigmoid=True)``, Adam 1e-3, trained for the budget (no validation: the held-out case
  is the test); ``sliding_window_inference`` roi 64^3, overlap 0.5, Gaussian; ``Invertd`` back to the case's
  own 1 mm grid; regions at probability 0.5.
- medsight: the committed ``benchmarks/results/brats.json`` (``benchmarks/brats.py --jobs 2 --threads 1``, the
  same budget and core split), read here, with its date, commit and CPU (a fixed budget buys a CPU's steps:
  compare runs of one machine).

    python benchmarks/brats_monai.py                         # 30 minutes a fold, two at once (about 65 min)
    python benchmarks/brats_monai.py --budget-minutes 1 --folds 0   # a smoke test, not a result
    python benchmarks/brats_monai.py --refresh-medsight      # after brats.py: its figures beside MONAI's

Writes benchmarks/results/brats_monai.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue

import numpy as np

from _common import (RESULTS_DIR, SHARED_DATA, THREAD_VARIABLES, format_table, library_versions, load_average,
                     uptime, write_results)
from _segmentation import monai_training_steps

DATA = SHARED_DATA / "brats_examples"
CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir()) if DATA.is_dir() else []
REGIONS = {"whole_tumour": (1, 2, 3, 4), "tumour_core": (1, 3, 4), "enhancing": (4,)}
RECIPE = ("monai.networks.nets.UNet(spatial_dims=3, in_channels=2, out_channels=3, channels=(16, 32, 64, 128, 256), "
          "strides=(2, 2, 2, 2), num_res_units=2); DiceCELoss(sigmoid=True) on the three BraTS regions; Adam lr 1e-3; "
          "2 mm (Spacingd), NormalizeIntensityd(nonzero, channel_wise); RandCropByPosNegLabeld 64^3 pos=1 neg=1 "
          "num_samples=4 (one case a step); RandFlipd each axis, RandScaleIntensityd/RandShiftIntensityd 0.1; "
          "CacheDataset, num_workers=0; sliding_window_inference roi 64^3 overlap 0.5 gaussian; Invertd to 1 mm")


def _item(case: str) -> dict:
    folder = DATA / case
    return {"image": [str(folder / "Flair_subtrMeanDivStd.nii.gz"), str(folder / "T1c_subtrMeanDivStd.nii.gz")],
            "label": str(folder / "OTMultiClass.nii.gz"), "id": case}


def _regions(label):
    """(1, *spatial) label values -> (3, *spatial) float regions: whole tumour, core, enhancing."""
    import torch

    return torch.cat([sum((label == v) for v in values).float() for values in REGIONS.values()], dim=0)


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    both = pred.sum() + ref.sum()
    return 1.0 if both == 0 else float(2.0 * np.logical_and(pred, ref).sum() / both)


def run_fold(held_out: str, budget_minutes: float, seed: int = 0) -> dict:
    """Train the recipe on every case but ``held_out`` for the budget, predict it; its Dice per region."""
    import nibabel as nib
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import (Compose, EnsureChannelFirstd, Invertd, Lambdad, LoadImaged, NormalizeIntensityd,
                                  Orientationd, RandCropByPosNegLabeld, RandFlipd, RandScaleIntensityd,
                                  RandShiftIntensityd, Spacingd)
    from monai.utils import set_determinism

    set_determinism(seed)
    start = time.perf_counter()
    deadline = start + budget_minutes * 60.0
    keys = ["image", "label"]
    loading = [LoadImaged(keys), EnsureChannelFirstd(keys), Orientationd(keys, axcodes="RAS"),
               Spacingd(keys, pixdim=(2.0, 2.0, 2.0), mode=("bilinear", "nearest")),
               NormalizeIntensityd("image", nonzero=True, channel_wise=True)]
    train_tf = Compose(loading + [
        RandCropByPosNegLabeld(keys, "label", spatial_size=(64, 64, 64), pos=1, neg=1, num_samples=4),
        RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2), RandScaleIntensityd("image", factors=0.1, prob=1.0),
        RandShiftIntensityd("image", offsets=0.1, prob=1.0), Lambdad("label", _regions)])
    train_items = [_item(c) for c in CASES if c != held_out]
    loader = DataLoader(CacheDataset(train_items, train_tf, progress=False), batch_size=1, shuffle=True, num_workers=0)
    model = UNet(spatial_dims=3, in_channels=2, out_channels=3, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                 num_res_units=2)
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve, losses, step = [], [], 0
    for step, loss, done in monai_training_steps(loader, model, loss_fn, optimizer, deadline):
        losses.append(loss)
        if step % 50 == 0 or done:
            curve.append({"step": step, "seconds": round(time.perf_counter() - start, 1),
                          "train_loss": round(float(np.mean(losses)), 5)})
            print(f"MONAI {held_out} step {step}: {curve[-1]['seconds']:.0f} s, loss {curve[-1]['train_loss']}",
                  flush=True)
            losses = []
    train_seconds = time.perf_counter() - start
    val_tf = Compose(loading)
    item = val_tf(_item(held_out))
    model.eval()
    with torch.inference_mode():
        item["pred"] = sliding_window_inference(item["image"][None], (64, 64, 64), 4, model, overlap=0.5,
                                                mode="gaussian")[0].sigmoid()
    inverted = Invertd("pred", transform=val_tf, orig_keys="image", nearest_interp=False)(item)
    pred = np.asarray(inverted["pred"]) > 0.5
    reference = np.asarray(nib.load(_item(held_out)["label"]).dataobj)
    if pred.shape[1:] != reference.shape:
        raise RuntimeError(f"inverted prediction {pred.shape[1:]} is not on the case's grid {reference.shape}")
    dice = {name: round(_dice(pred[i], np.isin(reference, values)), 4)
            for i, (name, values) in enumerate(REGIONS.items())}
    return {"case": held_out, "dice": dice, "steps": step, "patches_per_step": 4, "train_seconds": round(train_seconds, 1),
            "predict_seconds": round(time.perf_counter() - start - train_seconds, 1), "learning_curve": curve}


def _fold_in_subprocess(k: int, core: int, budget: float, out: Path) -> dict:
    env = {**os.environ, **{var: "1" for var in THREAD_VARIABLES}}
    part = out / f"fold{k}.json"
    cmd = ["taskset", "-c", str(core), sys.executable, __file__, "--one-fold", str(k), "--budget-minutes", str(budget),
           "--part", str(part)]
    load_before = load_average()
    if subprocess.run(cmd, env=env).returncode:
        sys.exit(f"MONAI fold {k} failed")
    return {**json.loads(part.read_text()), "fold": k, "core": core, "load_before": load_before,
            "load_after": load_average()}


def _medsight_figures() -> dict:
    path = RESULTS_DIR / "brats.json"
    if not path.is_file():
        return {}
    ours = json.loads(path.read_text())
    return {"source": "benchmarks/results/brats.json", "run_date": ours.get("date"), "run_commit": ours.get("commit"),
            "cpu_model": ours.get("machine", {}).get("cpu_model"),
            "budget_minutes_per_fold": ours.get("budget_minutes_per_fold"),
            "folds_side_by_side": ours.get("folds_side_by_side"),
            "mean_dice": {s: round(v["dice"]["mean"], 4) for s, v in ours["summary"].items()},
            "per_case_dice": ours["per_case_dice"],
            "train_seconds_per_fold": [f["train_seconds"] for f in ours["folds_detail"]]}


def _refresh_medsight() -> None:
    """Replace the medsight side of brats_monai.json by the current brats.json (MONAI's figures, date and
    machine kept as they were run)."""
    path = RESULTS_DIR / "brats_monai.json"
    if not path.is_file():
        sys.exit(f"{path} is missing: run the MONAI folds first")
    payload = json.loads(path.read_text())
    payload["medsight"] = ours = _medsight_figures()
    payload["whole_tumour_difference_medsight_minus_monai"] = round(
        ours["mean_dice"]["whole_tumour"] - payload["monai"]["mean_dice"]["whole_tumour"], 4)
    write_results("brats_monai", payload)  # the payload's own date, commit and machine are kept
    print(format_table(["region", "MONAI recipe", "medsight (brats.json)"],
                       [[name, payload["monai"]["mean_dice"][name], ours["mean_dice"][name]] for name in REGIONS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="training budget per fold")
    parser.add_argument("--folds", type=int, nargs="+", help="held-out cases by index (default all 4)")
    parser.add_argument("--jobs", type=int, default=2, help="folds side by side, each pinned to its own core")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsight_brats_monai")
    parser.add_argument("--refresh-medsight", action="store_true",
                        help="train nothing: put the current brats.json beside the MONAI figures already written")
    parser.add_argument("--one-fold", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--part", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not CASES:
        sys.exit(f"no BraTS cases under {DATA}")
    if args.refresh_medsight:
        _refresh_medsight()
        return
    if args.one_fold is not None:  # the child: one thread, one fold
        import torch

        torch.set_num_threads(1)
        args.part.write_text(json.dumps(run_fold(CASES[args.one_fold], args.budget_minutes)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    folds = args.folds if args.folds is not None else list(range(len(CASES)))
    cores: SimpleQueue = SimpleQueue()
    for c in range(args.jobs):
        cores.put(c)

    def on_free_core(k: int) -> dict:
        core = cores.get()
        try:
            return _fold_in_subprocess(k, core, args.budget_minutes, args.work)
        finally:
            cores.put(core)

    uptime_at_start = uptime()
    with ThreadPoolExecutor(args.jobs) as pool:
        per_fold = list(pool.map(on_free_core, folds))
    monai_mean = {name: round(float(np.mean([f["dice"][name] for f in per_fold])), 4) for name in REGIONS}
    ours = _medsight_figures()
    payload = {"data": str(DATA), "protocol": "leave-one-out over the 4 examples, each case predicted by the network "
               "trained on the other three", "budget_minutes_per_fold": args.budget_minutes, "threads": 1,
               "folds_side_by_side": args.jobs, "uptime_at_start": uptime_at_start,
               "libraries": library_versions(["torch", "monai"]), "recipe": RECIPE,
               "monai": {"mean_dice": monai_mean, "per_case_dice": {f["case"]: f["dice"] for f in per_fold},
                         "folds_detail": per_fold},
               "medsight": ours}
    if ours and len(folds) == len(CASES):
        payload["whole_tumour_difference_medsight_minus_monai"] = round(
            ours["mean_dice"]["whole_tumour"] - monai_mean["whole_tumour"], 4)
    path = write_results("brats_monai", payload)
    rows = [[name, monai_mean[name], ours.get("mean_dice", {}).get(name, "-")] for name in REGIONS]
    print(format_table(["region", "MONAI recipe", "medsight (brats.json)"], rows))
    print(f"MONAI steps per fold: {[f['steps'] for f in per_fold]}\nwritten {path}")


if __name__ == "__main__":
    main()
