"""Run a function over items in worker processes with a progress bar; errors come back as they were raised."""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, TypeVar

from medsight.progress import progress as progress_bar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use: the machine's cores, at most 8 (``MEDSIGHT_WORKERS`` overrides)."""
    env = os.environ.get("MEDSIGHT_WORKERS")
    return max(1, int(env)) if env else max(1, min(8, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, desc: str = "",
                 progress: bool = True) -> list[R]:
    """``[fn(x) for x in items]`` in parallel, results in input order; the first error is re-raised."""
    items = list(items)
    workers = default_workers() if workers is None else workers
    bar = progress_bar(total=len(items), desc=desc, requested=progress and len(items) >= 2, leave=False)
    try:
        if workers <= 1 or len(items) < 4:
            out = []
            for x in items:
                out.append(fn(x))
                bar.update()
            return out
        results: list = [None] * len(items)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results
    finally:
        bar.close()
