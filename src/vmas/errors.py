"""The errors every part of vmas raises and records, kept apart from any stage so that none imports another for them.

- :class:`StageError`: a step cannot run at all (its input is missing, its configuration unusable);
  the CLI prints its message and exits 1.
- :class:`RowError`: one bad input row; the stage runner records it (:func:`describe_error`) and goes on.
"""

from __future__ import annotations


class StageError(RuntimeError):
    """A stage cannot run at all (its input is missing, its configuration unusable)."""


class RowError(ValueError):
    """A bad input row: recorded with ``reason`` (a short tag the summary counts by) and skipped."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def describe_error(exc: BaseException, path: str | None = None) -> str:
    """``"<reason>: <detail>"`` with the file named, as stored in a row's ``error``."""
    text = str(exc).strip() or type(exc).__name__
    if path and path not in text:
        text = f"{path}: {text}"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return f"{reason}: {text}"
