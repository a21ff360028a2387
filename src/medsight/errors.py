"""Errors that reach the user as one line: the file, the problem and, where known, the fix."""
from __future__ import annotations

import math
from pathlib import Path


class MedsightError(Exception):
    """Base class for errors medsight reports to the user without a traceback (exit status 2)."""

    def __init__(self, problem: str, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def __reduce__(self):
        return (self.__class__, (self.problem, self.path, self.fix))

    def one_line(self) -> str:
        """The message as one line: ``path: problem (fix)``."""
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f" ({self.fix})"
        return " ".join(text.split())


class InputError(MedsightError):
    """Bad input: an unreadable, corrupt, inconsistent or missing file or folder."""


class PlanError(MedsightError):
    """A plan that cannot be used: edited into an invalid state, or made for other data."""


class CheckpointError(MedsightError):
    """A checkpoint that is tampered with, foreign, or made by another plan."""


def output_folder(path: str | Path, not_holding: dict[str, str] | None = None) -> Path:
    """``path`` as an output folder (it need not exist yet).

    Refused when a file is in its place or in the place of a folder above it, and when it holds one of
    ``not_holding`` (file name -> what such a folder is: a dataset's manifest, a run's run.json), so that
    one kind of folder is never written into another.
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError("is a file, not a folder", path=existing, fix="give a folder for the outputs with -o")
    for name, what in (not_holding or {}).items():
        if (path / name).is_file():
            raise InputError(f"holds {what} ({name}): writing here would mix the two", path=path,
                             fix="choose another folder")
    return path


def positive(value, name: str, integer: bool = False, minimum: float = 0.0):
    """``value`` unless it is not a finite number above ``minimum`` (or, with ``integer``, a whole number of at
    least ``minimum``); None passes (the default applies). Refusals name the argument."""
    if value is None:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = (whole and value >= minimum) if integer else (number and math.isfinite(value) and value > minimum)
    if not ok:
        kind = f"a whole number of at least {minimum:g}" if integer else f"a finite number above {minimum:g}"
        raise InputError(f"{name} must be {kind}, got {value!r}")
    return value


def as_list(value, name: str) -> list | None:
    """``value``'s items as a list: one string, path or number is one item (never a string's characters);
    None stays None."""
    if value is None:
        return None
    if isinstance(value, (str, Path, int)) and not isinstance(value, bool):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise InputError(f"{name} must be a list, got {value!r}") from None
