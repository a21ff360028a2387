"""--resume after a real `kill -9` reaches the same final weights as an uninterrupted run (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from medsight.training.checkpoint import load_checkpoint


def _train_cmd(ds, out, *extra):
    return [sys.executable, "-m", "medsight", "train", str(ds), "--out", str(out), "--threads", "1",
            "--device", "cpu", *extra]  # bit-equal resume is a CPU promise (GPU kernels may not be deterministic)


def test_resume_after_kill_equals_uninterrupted(tiny_breast, tmp_path):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["epochs"] = 12
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "MEDSIGHT_PROGRESS": "0"}
    full = tmp_path / "full"
    subprocess.run(_train_cmd(tiny_breast, full), check=True, env=env, capture_output=True, timeout=600)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(tiny_breast, cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = cut / "fold_0" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(log.read_text().splitlines())
    assert 3 <= done_before < 12, "the run must be cut in the middle"
    assert not (cut / "fold_0" / "checkpoint_final.pt").exists()

    r = subprocess.run(_train_cmd(tiny_breast, cut, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    a = load_checkpoint(full / "fold_0" / "checkpoint_final.pt")["model"]
    b = load_checkpoint(cut / "fold_0" / "checkpoint_final.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"weights differ at {k}")
    epochs = [json.loads(x)["epoch"] for x in log.read_text().splitlines()]
    assert epochs == list(range(12))
