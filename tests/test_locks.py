"""One writer at a time: a second process writing the same fold, predictions folder, comparison, encoder or
run folder is refused at once, naming the holder; processes planning one dataset take turns."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsight import api
from medsight.compare import compare
from medsight.errors import InputError
from medsight.locks import LOCK_NAME, one_writer
from medsight.pretrain import pretrain

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

_HOLD = """
import sys, time
from medsight.locks import one_writer
with one_writer(sys.argv[1], "a test's output", name=sys.argv[3]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


class Holder:
    """Another process holding the lock of ``folder`` for ``seconds`` (or until killed)."""

    def __init__(self, folder: Path, seconds: float = 60.0, name: str = LOCK_NAME):
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), str(seconds), name],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture()
def holder():
    held: list[Holder] = []

    def hold(folder: Path, seconds: float = 60.0, name: str = LOCK_NAME) -> Holder:
        held.append(Holder(folder, seconds, name))
        return held[-1]

    yield hold
    for h in held:
        h.kill()


def test_a_second_writer_is_refused_naming_the_holder_and_may_write_once_it_is_gone(tmp_path, holder):
    folder = tmp_path / "fold_0"
    h = holder(folder)
    with pytest.raises(InputError) as err:
        with one_writer(folder, "fold 0"):
            pytest.fail("the block ran beside another writer")
    message = err.value.one_line()
    assert str(folder) in message and "fold 0 is being written by process" in message
    assert str(h.proc.pid) in message and "-c" in message  # the holder's pid and command line
    h.kill()  # kill -9: the operating system lets go of the lock
    with one_writer(folder, "fold 0"):
        assert (folder / LOCK_NAME).is_file()
    assert not (folder / LOCK_NAME).exists()  # the holder removes its file as it lets go


def test_two_locks_of_one_process_on_one_output_do_not_wait_on_each_other(tmp_path):
    with one_writer(tmp_path, "outer", wait=True):
        with one_writer(tmp_path, "inner", wait=True):  # a stage nested in another (plan inside ensure_plan)
            assert (tmp_path / LOCK_NAME).is_file()
        assert (tmp_path / LOCK_NAME).is_file()  # still the outer block's
    assert not (tmp_path / LOCK_NAME).exists()


def test_another_thread_of_this_process_is_a_second_writer(tmp_path):
    import threading

    errors = []

    def second():
        try:
            with one_writer(tmp_path, "fold 0"):
                pass
        except InputError as e:
            errors.append(e.one_line())

    with one_writer(tmp_path, "fold 0"):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "fold 0 is being written by process" in errors[0]


def test_a_dataset_on_a_read_only_mount_is_still_read(tiny_breast, tmp_path):
    """A shared dataset, planned already, on a file system this user may only read: no lock file can be made,
    and none is needed to read its plan."""
    mount = tmp_path / "readonly"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        shutil.copytree(tiny_breast, mount / "ds")
        plan = api.ensure_plan(mount / "ds", quiet=True)  # writes the fingerprint it had not cached
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        assert api.ensure_plan(mount / "ds", quiet=True) == plan
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_waiting_takes_turns(tmp_path, holder, caplog):
    holder(tmp_path, seconds=1.5)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="medsight.locks"):
        with one_writer(tmp_path, "the dataset's plan", wait=True):
            waited = time.perf_counter() - start
    assert waited >= 1.0
    assert "waiting for process" in caplog.text and "the dataset's plan" in caplog.text


def test_a_refused_or_failed_block_leaves_no_folder_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with one_writer(tmp_path / "a" / "b", "x"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError):
        with one_writer(tmp_path / "c", "x"):
            (tmp_path / "c" / "part.json").write_text("{}")
            raise RuntimeError("failed after writing")
    assert (tmp_path / "c" / "part.json").is_file()  # work written is kept, the lock file is not
    assert not (tmp_path / "c" / LOCK_NAME).exists()


def test_train_refuses_a_fold_another_process_trains_before_planning(tiny_breast, tmp_path, holder):
    run = tmp_path / "run"
    holder(run / "fold_0")
    (tiny_breast / "plan.json").unlink()
    for fold in (0, "every"):
        with pytest.raises(InputError, match="fold 0 is being written by process"):
            api.train(tiny_breast, fold=fold, out=run, device="cpu", quiet=True)
    assert not (tiny_breast / "plan.json").exists()  # refused before planning
    assert sorted(p.name for p in run.iterdir()) == ["fold_0"]  # and nothing written into the run
    assert sorted(p.name for p in (run / "fold_0").iterdir()) == [LOCK_NAME]


def test_two_folds_started_together_plan_once_and_train_into_one_run(tmp_path):
    """Folds 0 and 1 of a dataset whose plan must be made, trained by two processes at once into one run
    folder: one plans, the other waits for it and uses it; the run then predicts with both folds."""
    import numpy as np

    from medsight.demo import demo_data_path

    dataset, demo = tmp_path / "ds", np.load(demo_data_path())
    np.savez(tmp_path / "breast.npz", train_images=demo["train_images"][:32], train_labels=demo["train_labels"][:32])
    manifest = api.import_dataset(tmp_path / "breast.npz", dataset, n_folds=2, progress=False)
    assert len(manifest.splits) == 2
    planned, run = tmp_path / "planned.txt", tmp_path / "run"
    code = ("import os, sys, time; from medsight import api; plan = api.plan\n"
            "def counted(*a, **k):\n"  # counts the plans made; as slow as timing a step would be
            "    open(sys.argv[4], 'a').write(f'{os.getpid()}\\n')\n"
            "    time.sleep(3)\n"
            "    return plan(*a, **{**k, 'measure': False})\n"
            "api.plan = counted\n"
            "api.train(sys.argv[1], fold=int(sys.argv[2]), out=sys.argv[3], device='cpu', epochs=1, quiet=True)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(dataset), str(k), str(run), str(planned)], env=env,
                              stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert len(planned.read_text().split()) == 1  # one process planned, the other waited and used its plan
    out = api.predict(run, [dataset], tmp_path / "pred", quiet=True)  # both folds, one plan
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + len(manifest.cases)
    assert not list(run.rglob(LOCK_NAME)) and not list(dataset.glob(LOCK_NAME))


def test_predict_compare_pretrain_and_run_refuse_an_output_being_written(tiny_breast, tmp_path, holder, shared_data):
    run = api.train(tiny_breast, fold=0, out=tmp_path / "run", device="cpu", quiet=True)
    out = tmp_path / "pred"
    holder(out)
    with pytest.raises(InputError, match="this predictions folder is being written by process"):
        api.predict(run, [tiny_breast], out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of the refused predict
    compared = tmp_path / "compare"
    holder(compared)
    with pytest.raises(InputError, match="this comparison is being written by process"):
        compare(tiny_breast, compared, quiet=True)
    encoder = tmp_path / "enc" / "encoder.safetensors"
    holder(encoder.parent, name=f".{encoder.name}.lock")
    with pytest.raises(InputError, match="the encoder encoder.safetensors is being written by process"):
        pretrain(shared_data / "isic_uda1", encoder, epochs=1, quiet=True)
    run_out = tmp_path / "run_out"
    holder(run_out)
    with pytest.raises(InputError, match="this run's folder is being written by process"):
        api.run(tmp_path / "breast_small.npz", run_out, quiet=True)
    assert sorted(p.name for p in run_out.iterdir()) == [LOCK_NAME]


def test_import_and_the_studies_refuse_an_output_being_written(tmp_path, holder):
    from medsight.classification.lesions import classify_lesions
    from medsight.classification.mil import run_mil
    from medsight.localise import localise
    from medsight.weak import weak_localise

    out = tmp_path / "out"
    holder(out)
    calls = {"this dataset": lambda: api.import_dataset(tmp_path / "breast_small.npz", out),
             "this lesion classification folder": lambda: classify_lesions(tmp_path / "points.csv", out),
             "this MIL folder": lambda: run_mil(tmp_path / "ds", out, "Platelets"),
             "this localisation folder": lambda: localise(tmp_path / "ds", out),
             "this localisation folder ": lambda: weak_localise(tmp_path / "ds", out, "Platelets")}
    for what, call in calls.items():
        with pytest.raises(InputError, match=f"{what.strip()} is being written by process"):
            call()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_the_cli_refuses_in_one_line_with_status_2(tiny_breast, tmp_path, holder):
    run = api.train(tiny_breast, fold=0, out=tmp_path / "run", device="cpu", quiet=True)
    out = tmp_path / "pred"
    holder(out)
    result = subprocess.run([sys.executable, "-m", "medsight", "predict", str(run), str(tiny_breast), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and str(out) in lines[0] and "being written by process" in lines[0], result.stderr
