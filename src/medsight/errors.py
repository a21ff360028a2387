"""Errors that reach the user as one line: the file, the problem and, where known, the fix."""
from __future__ import annotations

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


def output_folder(path: str | Path) -> Path:
    """``path`` as an output folder (it need not exist yet); refused when a file is in its place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("is a file, not a folder", path=path, fix="give a folder for the outputs with -o")
    return path
