"""The C allocator's settings for training on a CPU, chosen once per command (no torch import here)."""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory"]


#: glibc ``mallopt`` parameters: serve blocks up to 1 GiB from the heap (not from fresh mmap), keep up to 2 GiB
#: of freed heap before giving it back, grow the heap 256 MiB at a time
_MALLOPT = ((-3, 2**30), (-1, 2**31 - 1), (-2, 2**28))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD
#: environment settings by which a user tunes glibc's malloc already (then medsight leaves it alone)
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed tensor memory instead of unmapping it; return whether it was set.

    By default glibc serves every block above a dynamic threshold (32 MB at most) with ``mmap`` and returns
    it with ``munmap``: every training step's activations are then fresh pages that the kernel zeroes on
    first touch (an EfficientNet-Lite0 step spent about a third of its CPU time in the kernel, a U-Net step
    a tenth). Kept in the heap, the same blocks are reused step after step (benchmarks/allocator.py, one
    thread, paired rounds: a DRIVE U-Net step 0.84x the time, an EfficientNet-Lite0 step 0.60x with 16 %
    more peak memory, MONAI's U-Net 0.90x). ``medsight`` calls it at start when it runs as its own process;
    API users may call it themselves. Nothing is changed off Linux/glibc, with ``MEDSIGHT_MALLOC=default``,
    or when the user set MALLOC_*_ or GLIBC_TUNABLES.
    """
    if (not sys.platform.startswith("linux") or os.environ.get("MEDSIGHT_MALLOC") == "default"
            or any(v in os.environ for v in _USER_MALLOC_SETTINGS)):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: no glibc mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _MALLOPT)
