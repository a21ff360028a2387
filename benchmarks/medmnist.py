"""MedMNIST exam classification: medsight's default plan against a MONAI ResNet-18 with the same wall clock.

For each data set (BreastMNIST 28^2, AdrenalMNIST3D 28^3) in one run on one machine with the same torch
threads:

- **medsight**: ``medsight run SOURCE OUT --budget-minutes B`` through the real command line (import, plan
  with the budget, train, predict the validation split, evaluate); the wall time counts every stage.
- **MONAI ResNet-18**: ``monai.networks.nets.resnet18`` adapted to 28 pixels as MedMNIST v2 adapts its
  ResNet (3x3 stride-1 first convolution, no max-pool), MedMNIST v2's recipe (Adam 1e-3, batch 128,
  cross-entropy, learning rate x0.1 at 50% and 75% of training, inputs scaled to [-1, 1], no
  augmentation), trained until the same budget B is spent (the epochs are set from the first epoch's
  time); the final weights are scored, and the best-on-validation epoch is reported beside them.

Both are scored on MedMNIST's own validation split (the test split is kept back): AUC and argmax
accuracy. Prints a table last and writes benchmarks/results/medmnist.json.

    python benchmarks/medmnist.py                      # default budgets: 5 min (2D), 15 min (3D)
    python benchmarks/medmnist.py --budget-scale 0.2   # a quick look at a fifth of the budgets
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SHARED_DATA, format_table, library_versions, load_average, write_results  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

DATASETS = {"breastmnist": 5.0, "adrenalmnist3d": 15.0}  # default medsight budgets (minutes)


def auto_threads() -> int:
    """Torch threads for both contenders: every core on an idle machine, one when others keep the CPU busy.

    On a shared 2-core machine with a load of 4-7, one thread trained 4x faster than two (measured):
    OpenMP threads that wait on each other lose most of their time slices.
    """
    cores = os.cpu_count() or 1
    load = (load_average() or [0.0])[0]
    return 1 if load > cores - 1 else cores


def run_medsight(name: str, budget: float, threads: int, work: Path) -> dict:
    """``medsight run`` on the MedMNIST file; AUC/accuracy from its metrics.json (validation split)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MEDSIGHT_THREADS": str(threads)}
    out = work / f"medsight_{name}"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medsight", "run", str(SHARED_DATA / "medmnist" / f"{name}.npz"),
                           str(out), "--budget-minutes", str(budget)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"medsight run failed on {name}:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    plan = json.loads((out / "run" / "plan.json").read_text())
    decisions = json.loads((out / "run" / "fold_0" / "decisions.json").read_text())
    s = metrics["summary"]
    return {"auc": s["auc"], "accuracy": s["accuracy"], "auc_ci95": metrics["ci95"]["auc"]["ci95"],
            "wall_seconds": round(seconds, 1), "train_seconds": decisions["train_seconds"],
            "epochs": plan["epochs"], "network": plan["network"], "batch_size": plan["batch_size"],
            "measured_step_seconds": plan["measured_step_seconds"], "n_val": metrics["num_cases"]}


def load_split(name: str, subset: str):
    """Images scaled to [-1, 1] as (N, 1, *s) float32 and labels (N,) of one MedMNIST subset."""
    import numpy as np

    with np.load(SHARED_DATA / "medmnist" / f"{name}.npz") as z:
        x = z[f"{subset}_images"].astype(np.float32) / 255.0
        y = z[f"{subset}_labels"].reshape(-1).astype(np.int64)
    return (x[:, None] - 0.5) / 0.5, y


def run_monai(name: str, budget: float, threads: int, seed: int = 0) -> dict:
    """MONAI ResNet-18 with MedMNIST v2's recipe, trained for ``budget`` minutes of wall clock."""
    import numpy as np
    import torch
    from monai.networks.nets import resnet18

    from medsight.evaluation.classification import roc_auc

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.perf_counter()
    x_train, y_train = load_split(name, "train")
    x_val, y_val = load_split(name, "val")
    nd = x_train.ndim - 2
    model = resnet18(spatial_dims=nd, n_input_channels=1, num_classes=int(y_train.max()) + 1,
                     conv1_t_size=3, conv1_t_stride=1, no_max_pool=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    deadline = start + budget * 60.0
    total_epochs, epoch, steps, history = None, 0, 0, []

    @torch.inference_mode()
    def evaluate() -> tuple[float, float]:
        model.eval()
        probs = torch.cat([torch.softmax(model(torch.from_numpy(x_val[i:i + 128])), 1)
                           for i in range(0, len(x_val), 128)]).numpy()
        model.train()
        return roc_auc(y_val, probs), float(np.mean(probs.argmax(1) == y_val))

    out_of_time = False
    while not out_of_time and (total_epochs is None or epoch < total_epochs):
        epoch_start = time.perf_counter()
        order = rng.permutation(len(x_train))
        model.train()
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx])).backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() > deadline:
                out_of_time = True
                break
        epoch += 1
        if total_epochs is None:  # MedMNIST's schedule (x0.1 at 50% and 75%) over the epochs the budget allows
            per_epoch = time.perf_counter() - epoch_start
            total_epochs = max(1, int((deadline - time.perf_counter()) / (per_epoch * 1.05)) + 1)
            for group in optimizer.param_groups:
                group["initial_lr"] = group["lr"]
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, [max(1, int(0.5 * total_epochs)), max(1, int(0.75 * total_epochs))], 0.1,
                last_epoch=0)
        else:
            scheduler.step()
        history.append(evaluate())
    auc, acc = evaluate()
    best = max(range(len(history)), key=lambda k: history[k][0])
    return {"auc": auc, "accuracy": acc, "wall_seconds": round(time.perf_counter() - start, 1),
            "epochs": epoch, "epochs_planned": total_epochs, "steps": steps, "completed_budget_epochs": not out_of_time,
            "best_epoch_auc": history[best][0], "best_epoch_accuracy": history[best][1], "best_epoch": best + 1,
            "n_val": int(len(y_val))}


def main() -> None:
    """Run both contenders on each data set, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (0.2 for a quick look)")
    parser.add_argument("--threads", type=int, help="torch threads for both (default: 1 on a busy machine, else all cores)")
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    threads = args.threads or auto_threads()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="medsight_bench_") as tmp:
        for name in args.datasets:
            budget = DATASETS[name] * args.budget_scale
            load_before = load_average()
            ours = run_medsight(name, budget, threads, Path(tmp))
            peer = run_monai(name, budget, threads)
            results[name] = {"budget_minutes": budget, "load_before": load_before, "load_after": load_average(),
                             "medsight": ours, "monai_resnet18": peer,
                             "auc_difference": ours["auc"] - peer["auc"],
                             "time_ratio": ours["wall_seconds"] / peer["wall_seconds"]}
            for who, r in (("medsight", ours), ("MONAI ResNet-18", peer)):
                rows.append([name, who, budget, r["auc"], r["accuracy"], r["wall_seconds"], r["epochs"]])
            print(f"{name}: medsight AUC {ours['auc']:.3f} ACC {ours['accuracy']:.3f} ({ours['wall_seconds']} s); "
                  f"MONAI AUC {peer['auc']:.3f} ACC {peer['accuracy']:.3f} ({peer['wall_seconds']} s)", flush=True)
    payload = {"data": {n: f"{SHARED_DATA / 'medmnist' / n}.npz (MedMNIST v2 train -> val split)" for n in args.datasets},
               "split": "MedMNIST's own train/val; the test split is kept back", "threads": threads,
               "uptime_at_start": uptime, "uptime_at_end": subprocess.run(["uptime"], capture_output=True,
                                                                             text=True).stdout.strip(),
               "libraries": library_versions(["torch", "monai"]), "results": results,
               "peer_recipe": "monai resnet18, 3x3 stride-1 conv1, no max-pool; Adam 1e-3, batch 128, CE, "
                              "lr x0.1 at 50%/75% of the epochs the budget allows; inputs (x/255-0.5)/0.5"}
    path = write_results("medmnist", payload, Path(args.out) if args.out else None)
    print(format_table(["data", "system", "budget min", "val AUC", "val ACC", "wall s", "epochs"], rows))
    print(f"written {path}")


if __name__ == "__main__":
    main()
