"""parallel_map: order kept, errors re-raised as raised, functions that cannot be pickled still run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsight.parallel import parallel_map


def test_results_keep_the_input_order_across_workers():
    out = parallel_map(lambda x: (x * x, os.getpid()), range(37), workers=2, progress=False)
    assert [v for v, _ in out] == [x * x for x in range(37)]
    assert os.getpid() not in {pid for _, pid in out}  # the work ran in worker processes


def test_the_function_is_inherited_not_pickled():
    big = list(range(100000))  # a closure over a large object, as a partial holding a manifest is
    assert parallel_map(lambda i: big[i] + 1, [3, 5, 7, 9, 11], workers=2, progress=False) == [4, 6, 8, 10, 12]


def test_an_error_in_a_worker_comes_back_as_raised():
    def fail_on_seven(x: int) -> int:
        if x == 7:
            raise ValueError("seven is bad")
        return x

    with pytest.raises(ValueError, match="seven is bad"):
        parallel_map(fail_on_seven, range(20), workers=2, progress=False)
    # and the next call still works (the shared state was cleared)
    assert parallel_map(abs, [-1, -2, -3, -4], workers=2, progress=False) == [1, 2, 3, 4]


def test_one_worker_runs_in_process():
    assert parallel_map(lambda x: os.getpid(), range(5), workers=1, progress=False) == [os.getpid()] * 5


def test_a_call_inside_a_worker_runs_in_that_worker():
    def inner(x: int) -> tuple[int, set[int]]:
        pids = parallel_map(lambda y: os.getpid(), range(6), workers=2, progress=False)
        return x, set(pids)

    out = parallel_map(inner, range(4), workers=2, progress=False)
    assert [x for x, _ in out] == [0, 1, 2, 3]
    assert all(len(pids) == 1 for _, pids in out)  # the nested map stayed in its worker process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    """A ``kill -9`` of the process running parallel_map takes its workers with it (before, they ran on and
    then waited forever for work)."""
    script = tmp_path / "slow_map.py"
    script.write_text(
        "import os, sys, time\n"
        "from medsight.parallel import parallel_map\n"
        f"folder = {str(tmp_path)!r}\n"
        "def slow(i):\n"
        "    open(os.path.join(folder, f'worker_{os.getpid()}'), 'w').close()\n"
        "    time.sleep(60)\n"
        "parallel_map(slow, range(8), workers=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    while len(list(tmp_path.glob("worker_*"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.name.split("_")[1]) for p in tmp_path.glob("worker_*")]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
