"""Checkpoints: atomic, loaded without unpickling code, tampered or foreign files refused."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from medsight.errors import CheckpointError
from medsight.training.checkpoint import load_checkpoint, save_checkpoint


def _state():
    net = torch.nn.Linear(3, 2)
    return {"model": net.state_dict(), "epoch": 4}


def test_round_trip_keeps_tensors(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "c.pt", state, plan_hash="abc")
    back = load_checkpoint(path, "abc")
    assert back["epoch"] == 4
    torch.testing.assert_close(back["model"]["weight"], state["model"]["weight"])
    assert not list(tmp_path.glob(".*tmp"))


def test_tampered_bytes_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _state(), plan_hash="abc")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path, "abc")


@pytest.mark.parametrize("dies_at_rename", [1, 2, 3])
def test_a_save_killed_between_its_renames_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, dies_at_rename):
    """A process killed after any of the save's renames (checksum list, checkpoint, checksum) leaves a
    checkpoint that loads: the old one before the checkpoint's rename, the new one after it."""
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 1}, plan_hash="abc")
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == dies_at_rename:
            raise KeyboardInterrupt  # stands for the kill: nothing after it runs
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2}, plan_hash="abc")
    monkeypatch.setattr(os, "replace", real_replace)
    # renames: 1 the checksum list (new + old), 2 the checkpoint, 3 the checksum (new only)
    assert load_checkpoint(path, "abc")["epoch"] == (1 if dies_at_rename <= 2 else 2)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):  # still refused when changed afterwards
        load_checkpoint(path, "abc")


def test_two_saves_killed_before_the_checkpoint_rename_keep_the_checkpoint_loadable(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 1}, plan_hash="abc")
    real_replace = os.replace
    for epoch in (2, 3):  # each killed right after listing its digest: the file on disk stays epoch 1
        calls = []

        def dying_replace(src, dst, calls=calls):
            calls.append(dst)
            if len(calls) == 2:
                raise KeyboardInterrupt
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", dying_replace)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, {"epoch": epoch}, plan_hash="abc")
        monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(path, "abc")["epoch"] == 1


def test_truncated_file_without_checksum_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _state(), plan_hash="abc")
    (tmp_path / "c.pt.sha256").unlink()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(path, "abc")


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"magic": "medsight-checkpoint-v1", "x": Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_foreign_checkpoint_and_other_plan_refused(tmp_path):
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign"):
        load_checkpoint(tmp_path / "foreign.pt")
    path = save_checkpoint(tmp_path / "c.pt", _state(), plan_hash="abc")
    with pytest.raises(CheckpointError, match="another plan"):
        load_checkpoint(path, "xyz")


@pytest.fixture()
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs); skipped where this user may not mount one."""
    import subprocess

    mount = tmp_path / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)  # "target is busy" if a file there were left open


def test_a_full_disk_is_a_full_disk_and_the_checkpoint_before_it_stays(small_disk):
    import errno

    path = small_disk / "checkpoint_latest.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "epoch": 0}, "h")
    with pytest.raises(OSError) as err:  # torch's own message is "unexpected pos 576 vs 534"
        save_checkpoint(path, {"model": {"w": torch.ones(100_000)}, "epoch": 1}, "h")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert load_checkpoint(path, "h")["epoch"] == 0  # the one before is intact and its checksum listed
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint_latest.pt", "checkpoint_latest.pt.sha256"]
