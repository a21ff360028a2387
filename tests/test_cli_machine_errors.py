"""Failures of the machine rather than of the input (a full disk, memory run out) end in one line naming the
file and what to do, exit status 1, and leave what was written before intact; a bug keeps its traceback."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from medsight import cli
from medsight.tempfiles import is_temporary
from medsight.training.checkpoint import load_checkpoint
from medsight.training.loop import FINAL, LATEST


def _one_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _mount_tmpfs(folder, size: int) -> None:
    folder.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")


def test_a_disk_that_fills_up_during_training_is_one_line_and_training_resumes_elsewhere(tiny_breast, tmp_path,
                                                                                        capsys):
    """A real small file system: epoch 1's checkpoints fit, epoch 2's new one (written beside the old) does not."""
    probe = tmp_path / "probe"
    assert cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(probe), "--epochs", "1"]) == 0
    epoch_1 = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, epoch_1 + (probe / "fold_0" / LATEST).stat().st_size // 2)
    try:
        run = disk / "run"
        capsys.readouterr()
        assert cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(run)]) == 1
        line = _one_line(capsys)
        assert line.startswith(f"medsight: error: {run / 'fold_0'}/") and "No space left on device" in line, line
        assert "train --resume" in line
        fold = run / "fold_0"
        assert load_checkpoint(fold / LATEST)["epoch"] == 0 and not (fold / FINAL).exists()  # epoch 1's, intact
        assert not [p for p in fold.iterdir() if is_temporary(p.name) or p.name.startswith(".medsight")]
        moved = tmp_path / "moved"
        shutil.copytree(run, moved)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(moved), "--resume"]) == 0
    assert load_checkpoint(moved / "fold_0" / FINAL)


def test_torchs_own_message_for_a_full_disk_becomes_one_line(tiny_breast, tmp_path, monkeypatch, capsys):
    """What torch raises when the disk fills up under its zip writer, without needing a small disk to do it."""
    import medsight.training.checkpoint as checkpoint

    save, written, run = checkpoint.torch.save, [], tmp_path / "run"

    def full_at_the_second_epoch(payload, f):
        if "checkpoint_latest" in f.name:
            written.append(f.name)
            if len(written) == 2:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        save(payload, f)

    monkeypatch.setattr(checkpoint.torch, "save", full_at_the_second_epoch)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 0))
    assert cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(run)]) == 1
    line = _one_line(capsys)
    assert line == (f"medsight: error: {run / 'fold_0' / LATEST}: No space left on device (free some disk space and "
                    "run the command again: what was written before is intact, train --resume continues from the last "
                    "checkpoint, predict --continue after the last case)")
    assert load_checkpoint(run / "fold_0" / LATEST)["epoch"] == 0


def test_a_failure_of_torchs_writer_with_room_on_disk_keeps_its_traceback(tmp_path, monkeypatch):
    import medsight.training.checkpoint as checkpoint

    def broken(payload, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # the disk has room: not a full disk, a bug
        checkpoint.save_checkpoint(tmp_path / "c.pt", {"epoch": 0}, "h")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate "
                                                "68719476736 bytes."), MemoryError()])
def test_memory_run_out_is_one_line_saying_how_to_make_the_plan_smaller(tiny_breast, tmp_path, monkeypatch, capsys,
                                                                        error):
    import medsight.training.loop as loop

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(loop, "optimizer_step", out_of_memory)
    assert cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(tmp_path / "run")]) == 1
    line = _one_line(capsys)
    assert "out of memory" in line and "batch_size" in line and "plan.json" in line


def test_the_memory_line_of_predict_says_what_predict_can_change():
    from medsight.cli import machine_error_line

    line = machine_error_line(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 bytes."),
                              "predict")
    assert line.startswith("out of memory: DefaultCPUAllocator") and "inference.batch_size" in line
    assert machine_error_line(RuntimeError("expected scalar type Float but found Half"), "predict") is None


def test_a_bug_keeps_its_traceback(tiny_breast, tmp_path, monkeypatch):
    import medsight.training.loop as loop

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x2)")

    monkeypatch.setattr(loop, "optimizer_step", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cli.main(["train", str(tiny_breast), "--fold", "0", "--out", str(tmp_path / "run")])
