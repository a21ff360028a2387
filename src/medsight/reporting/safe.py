"""Figures that degrade gracefully: a figure that cannot be drawn becomes a one-line note in the report."""
from __future__ import annotations

import html
from collections.abc import Callable


class FigureSkipped(Exception):
    """A figure cannot be drawn because something it needs is missing; the message says what."""


def reason(error: Exception) -> str:
    """Why a figure was skipped: the message of a FigureSkipped, else the error's type and message."""
    return str(error) if isinstance(error, FigureSkipped) else f"{type(error).__name__}: {error}"


def note(what: str, error: Exception) -> str:
    """The one-line HTML note that replaces a figure."""
    return f'<p class="note">{html.escape(what)}: not shown ({html.escape(reason(error))})</p>'


def guarded(what: str, draw: Callable[[], str]) -> str:
    """``draw()``, or a one-line note when it fails for any reason (the report itself must not fail)."""
    try:
        return draw()
    except Exception as e:  # noqa: BLE001  (every failure becomes a note)
        return note(what, e)
