"""What a ``kill -9`` leaves behind is swept when the stage starts again: atomic writes' temporary files,
the planner's temporary folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from medsight import api
from medsight.planning.budget import PLAN_FOLDER_PREFIX, remove_abandoned_plan_folders
from medsight.preprocessing.cache import cache_dir
from medsight.tempfiles import is_temporary, remove_stale_temporaries


def test_the_names_of_every_atomic_writer_are_temporary_and_targets_are_not():
    for name in (".checkpoint_latest.pt.k3x9ab.tmp", ".manifest.json.q1w2e3.tmp", ".12.8273f0d5.tmp.png",
                 ".0.k3x9ab.tmp.npy", ".0_loc.k3x9ab.tmp.npz", ".predictions.csv.tmp", ".scan.1a2b3c4d.tmp.nii.gz"):
        assert is_temporary(name), name
    for name in ("checkpoint_latest.pt", "0.npy", ".gitignore", "notes.tmp", ".hidden.png", "12.tmp.png"):
        assert not is_temporary(name), name


def test_only_temporaries_old_enough_are_removed(tmp_path):
    old, fresh, kept = tmp_path / ".0.abc.tmp.npy", tmp_path / ".1.def.tmp.npy", tmp_path / "0.npy"
    for f in (old, fresh, kept):
        f.write_bytes(b"x")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert remove_stale_temporaries(tmp_path, min_age_seconds=3600) == [old]
    assert fresh.exists() and kept.exists()
    assert remove_stale_temporaries(tmp_path) == [fresh] and kept.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_train_predict_and_preprocess_sweep_what_a_kill_left(tiny_breast, tmp_path):
    run = api.train(tiny_breast, fold=0, out=tmp_path / "run", device="cpu", quiet=True)
    cut_checkpoint = run / "fold_0" / ".checkpoint_latest.pt.k3x9ab.tmp"
    cut_checkpoint.write_bytes(b"half")
    api.train(tiny_breast, fold=0, out=run, device="cpu", quiet=True)
    assert not cut_checkpoint.exists()

    out = api.predict(run, [tiny_breast], tmp_path / "pred", device="cpu", quiet=True)
    cut_case = out / ".abc.1a2b3c4d.tmp.csv"
    cut_case.write_bytes(b"half")
    api.predict(run, [tiny_breast], out, continue_=True, device="cpu", quiet=True)
    assert not cut_case.exists()

    cache = cache_dir(tiny_breast, json.loads((tiny_breast / "plan.json").read_text()))
    abandoned, in_flight = cache / ".3.k3x9ab.tmp.npy", cache / ".4.q1w2e3.tmp.npy"
    for f in (abandoned, in_flight):
        f.write_bytes(b"half")
    hour_ago = time.time() - 3700
    os.utime(abandoned, (hour_ago, hour_ago))
    api.preprocess(tiny_breast, workers=1, quiet=True)
    assert not abandoned.exists() and in_flight.exists()  # another fold's process may be writing this one


def test_plan_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{PLAN_FOLDER_PREFIX}{int(gone.stdout)}-abc"
    mine = tmp_path / f"{PLAN_FOLDER_PREFIX}{os.getpid()}-def"
    unnamed = tmp_path / f"{PLAN_FOLDER_PREFIX}xyz"
    for d in (dead, mine, unnamed):
        d.mkdir()
        (d / "4.npy").write_bytes(b"x")
    assert remove_abandoned_plan_folders() == [dead]
    assert mine.exists() and unnamed.exists()


def test_an_appended_line_that_does_not_fit_names_the_file(monkeypatch, tmp_path):
    import builtins
    import errno

    import pytest

    from medsight.tempfiles import append_line

    log = tmp_path / "log.jsonl"
    append_line(log, '{"epoch": 0}')
    append_line(log, '{"epoch": 1}')
    assert log.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'

    class Full:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # at the flush, without a name

        def write(self, text):
            return len(text)

    monkeypatch.setattr(builtins, "open", Full)
    with pytest.raises(OSError) as err:
        append_line(log, '{"epoch": 2}')
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(log)


def test_an_error_writing_the_temporary_names_the_file_being_written(tmp_path):
    import errno

    import pytest

    from medsight.tempfiles import replaced_on_success

    target = tmp_path / "case_0001.nii.gz"
    for filename in (None, "temporary"):
        with pytest.raises(OSError) as err:
            with replaced_on_success(target, ".nii.gz") as tmp:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(tmp)] if filename else []))
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    with pytest.raises(OSError) as err:  # another file's error keeps its own name
        with replaced_on_success(target) as tmp:
            open(tmp_path / "missing" / "x")
    assert err.value.filename == str(tmp_path / "missing" / "x")
    assert list(tmp_path.iterdir()) == []
