"""Temporary files of medsight's atomic writes, and the sweep of those a killed process leaves behind.

Every file medsight writes atomically goes through :func:`replaced_on_success`: it is first written beside its
target under a hidden name holding ``.tmp`` (``.checkpoint_latest.pt.k3x9.tmp``, ``.12.8273f0d5.tmp.png``,
``.0.k3x9.tmp.npy``), then renamed onto it. A ``kill -9`` between the two leaves the temporary file; Ctrl-C does not (the writers remove it).
The stages that write into a folder sweep it when they start again.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: a hidden name with a ``.tmp`` part, last or before the extension the writer needs (numpy, PIL pick formats by it)
TEMPORARY_NAME = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)*$")


#: errors that, raised without a file name inside a write, are the write's: a full disk or quota, a file too large
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


@contextmanager
def replaced_on_success(path: str | Path, ext: str = "") -> Iterator[Path]:
    """A new hidden temporary file beside ``path`` to write; it becomes ``path`` when the block ends without an
    error and is removed when it raises, so ``path`` appears complete or not at all.

    An ``OSError`` of the block naming the temporary file, or a full disk or quota raised without a file name, is
    raised naming ``path``. Its name is ``.NAME.<random>.tmp`` with ``ext`` kept last (``.0.<random>.tmp.npy``) for writers that pick
    the format by it: the name :func:`remove_stale_temporaries` knows.
    """
    path = Path(path)
    stem = path.name[: len(path.name) - len(ext)] if ext and path.name.endswith(ext) else path.name
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=f".tmp{ext}")
    os.close(fd)
    temporary = Path(name)
    try:
        with _failed_write_named(path, name):
            yield temporary
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def _failed_write_named(path: Path, temporary: str | None = None) -> Iterator[None]:
    """Raise an ``OSError`` of the block naming ``temporary``, or a full disk or quota raised without a file
    name (the operating system's way at a flush), as naming ``path``, the file being written."""
    try:
        yield
    except OSError as e:
        if e.strerror and ((temporary is not None and e.filename == temporary)
                           or (e.filename is None and e.errno in _WRITE_ERRNOS)):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to a log-like file (its readers skip a line cut short); a full disk,
    which the operating system reports without a file name, is raised naming ``path``."""
    with _failed_write_named(Path(path)), open(path, "a") as f:
        f.write(line + "\n")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is the name of an atomic write's temporary file."""
    return bool(TEMPORARY_NAME.match(name))


def remove_stale_temporaries(folder: str | Path, min_age_seconds: float = 0.0) -> list[Path]:
    """Delete the temporary files directly in ``folder`` last modified at least ``min_age_seconds`` ago.

    Give an age where another process may be writing into the same folder (two folds preprocessing one
    cache): its temporary file lives for milliseconds. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for path in folder.iterdir():
        try:
            if is_temporary(path.name) and path.is_file() and now - path.stat().st_mtime >= min_age_seconds:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed
