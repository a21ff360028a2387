"""Data parallel with torchrun: 2 CPU processes (gloo) give the loss curve of 1 process.

Each optimiser step's batch is split between the processes (sample j of a step goes to process j % 2,
augmented with its own generator), gradients are averaged by DDP and batch norm is synchronised, so
the two runs see the same samples and compute the same updates up to floating-point summation order
(gradients agree to ~1e-7). With SGD the curves then agree to 1e-4 relative. Adam divides each update by
the root of the squared gradient, so parameters whose gradient is ~0 turn that 1e-7 noise into full-size
steps: with AdamW the curves agree to 1e-2 relative (measured 7e-4 .. 6e-3 over 3 epochs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch


def _losses(run):
    return np.array([json.loads(x)["train_loss"] for x in (run / "fold_0" / "log.jsonl").read_text().splitlines()])


import pytest


@pytest.mark.parametrize("optimizer, rtol", [({"name": "sgd", "lr": 0.01, "momentum": 0.9, "schedule": "poly"}, 1e-4),
                                             (None, 1e-2)])
def test_two_processes_match_one(tiny_breast, tmp_path, optimizer, rtol):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["epochs"] = 3
    plan["channels_last"] = False  # DDP re-lays parameters out contiguously; compare like with like
    plan["network"]["dropout"] = 0.0  # dropout masks come from each process's own generator
    if optimizer:
        plan["optimizer"] = optimizer
        # one network at lr 0.01: a 5-member ensemble of 8-channel nets at lr 0.05 amplifies summation-order
        # noise (one process with 1 thread vs 2 threads already differs by 4e-4 at epoch 3), and so does one
        # network at lr 0.05 on an Intel AVX-512 CPU (1.4e-2 at epoch 3; 2e-6 at lr 0.01)
        plan["network"]["members"] = 1
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "MEDSIGHT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one"
    two = tmp_path / "two"
    subprocess.run([sys.executable, "-m", "medsight", "train", str(tiny_breast), "--out", str(one), "--threads", "1",
                    "--device", "cpu"],
                   check=True, env=env, capture_output=True, timeout=600)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "medsight", "train", str(tiny_breast), "--out", str(two), "--threads", "1",
                        "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=rtol)


def test_each_torchrun_process_gets_its_own_gpu():
    from medsight.errors import InputError
    from medsight.training.distributed import process_device

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    two = {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert process_device(cuda, gpus=2, env=two) == torch.device("cuda", 1)
    assert process_device(cpu, gpus=2, env=two) == cpu  # gloo on CPU: nothing to map
    assert process_device(torch.device("cuda", 1), gpus=2, env={}) == torch.device("cuda", 1)  # one process
    with pytest.raises(InputError, match=r"more processes on this node than it has GPUs \(1\).*--nproc_per_node 1"):
        process_device(cuda, gpus=1, env=two)
