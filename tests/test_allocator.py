"""The allocator setting the command line makes: freed blocks stay mapped for reuse (observable in RSS)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: the probes' resident-memory reader (Linux's /proc, 4 KiB pages)
RSS_MB = """
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
"""

PROBE = RSS_MB + """
import sys
import numpy as np
from medsight.allocator import keep_freed_memory

applied = keep_freed_memory() if sys.argv[1] == "keep" else False
before = rss_mb()
block = np.ones(200 * 2**20 // 8)  # 200 MB, above glibc's default mmap threshold
del block
print(applied, round(rss_mb() - before))
"""


def _probe(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_stay_for_reuse_only_when_asked():
    applied, kept = _probe("keep")
    assert applied == "True" and kept > 150  # the freed 200 MB stay resident, ready for the next step
    applied, kept = _probe("default")
    assert applied == "False" and kept < 50  # glibc's default hands them back at once
    applied, kept = _probe("keep", MEDSIGHT_MALLOC="default")
    assert applied == "False" and kept < 50
    applied, _ = _probe("keep", MALLOC_MMAP_THRESHOLD_="65536")  # the user's own setting wins
    assert applied == "False"


IN_PROCESS = RSS_MB + """
import numpy as np
from medsight.cli import main

main(["plan", "/nonexistent-dataset"])  # the command line called by another program (an error: exit 2)
before = rss_mb()
block = np.ones(200 * 2**20 // 8)
del block
print(round(rss_mb() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_main_called_from_another_program_leaves_its_allocator_alone():
    out = subprocess.run([sys.executable, "-c", IN_PROCESS], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.split()[-1]) < 50  # glibc's default still hands the freed 200 MB back
