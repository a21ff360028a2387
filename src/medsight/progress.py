"""Progress bars on an interactive terminal only, so stderr stays one line per error in scripts and logs."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def bars_enabled(requested: bool = True) -> bool:
    """Show bars when asked and stderr is a terminal (``MEDSIGHT_PROGRESS=1`` forces them)."""
    if not requested:
        return False
    if os.environ.get("MEDSIGHT_PROGRESS") in ("0", "1"):
        return os.environ["MEDSIGHT_PROGRESS"] == "1"
    return sys.stderr.isatty()


def progress(iterable=None, requested: bool = True, **kwargs) -> tqdm:
    """A tqdm bar that is shown only where :func:`bars_enabled` says so."""
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, disable=not bars_enabled(requested), **kwargs)


def log(message: str, quiet: bool = False) -> None:
    """Print one line of a command's progress to stdout (flushed), unless ``quiet``."""
    if not quiet:
        print(message, flush=True)
