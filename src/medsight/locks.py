"""One medsight process at a time writes one thing: a fold being trained, a predictions folder, a dataset's plan.

Two processes writing the same fold (a job submitted twice, ``train --resume`` beside the run it resumes)
would interleave their checkpoints and logs, and the run's model would be whichever finished last. Each such
output takes an advisory lock (``flock``) on a hidden file in its folder while it is written; a second
process is refused at once, naming the holder, or, where waiting is right (two folds planning one dataset),
waits for it. The holder removes the file as it lets go, and the operating system drops the lock when its
process ends in any way (``kill -9`` included, which leaves the file), so a lock is never stale: a file
nobody holds means nothing.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with one_writer(folder / "fold_0", "fold 0"):
    ...     (folder / "fold_0").is_dir()
    True
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from medsight.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no flock; outputs are then unguarded, as before
    fcntl = None  # type: ignore[assignment]

#: the lock file's name in the folder it guards
LOCK_NAME = ".medsight.lock"

#: lock files held here ((resolved path, thread) -> depth), so that a stage nested in another (``plan`` inside
#: ``ensure_plan``) takes its own lock again without waiting on itself; another thread of this process is a
#: second writer like another process
_HELD: dict[tuple[str, int], int] = {}

_LOG = logging.getLogger("medsight.locks")


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it into the file (best effort: it may be mid-write)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another medsight process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return (f"process {info['pid']} on {info.get('host', '?')} since {since}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _created_folders(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` of ``folder`` would create, deepest first."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


@contextmanager
def one_writer(folder: str | Path, what: str, wait: bool = False, name: str = LOCK_NAME,
               fix: str = "wait for it to finish, or write somewhere else") -> Iterator[None]:
    """Hold the lock of ``folder`` (created when missing) for the block; ``what`` names the output in messages.

    Another process holding it: an :class:`~medsight.errors.InputError` naming it (``wait=False``), or a
    message and a wait until it is done (``wait=True``). Folders this call created that are empty at the end
    (the block was refused or failed before writing) are removed, so a refused command leaves nothing behind.
    Where the file system has no ``flock`` (Windows, some network mounts) the block runs unguarded.
    """
    folder = Path(folder)
    created = _created_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    key = (str(path.resolve()), threading.get_ident())
    if fcntl is None or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    try:
        fd = _locked(path, folder, what, wait, fix)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        if fd is not None:
            os.ftruncate(fd, 0)
            program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
            program = "medsight" if program == "__main__.py" else program  # python -m medsight
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                      "command": " ".join([program, *sys.argv[1:]])[:200]}).encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        if fd is not None:  # removed while still held: whoever opens the name next gets a new file
            path.unlink(missing_ok=True)
            os.close(fd)  # releases the lock
        _remove_empty(created)


def _locked(path: Path, folder: Path, what: str, wait: bool, fix: str) -> int | None:
    """A descriptor of ``path`` holding its exclusive lock (None where the file system has no locks)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a folder this user may only read (a shared dataset, planned and cached already)
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            _LOG.debug(f"{path}: no lock file ({err}); {what} is not guarded against a second writer")
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise InputError(f"{what} is being written by {_holder(path)}", path=folder, fix=fix) from None
                _LOG.warning(f"{folder}: waiting for {_holder(path)}, which is writing {what}")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:  # this file system has no locks: go on unguarded
            os.close(fd)
            _LOG.debug(f"{path}: no lock ({err}); {what} is not guarded against a second writer")
            return None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us removes the file as it lets go: lock the file now at the name, not that one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders :func:`one_writer` created, deepest first, while each is empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return
