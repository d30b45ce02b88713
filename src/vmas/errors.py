"""The errors every part of vmas raises and records, kept apart from any stage so that none imports another for them.

- :class:`StageError`: a step cannot run at all (its input is missing, its configuration unusable);
  the CLI prints its message and exits 1.
- :class:`ManifestError` (a :class:`StageError`): a manifest part is unreadable; says which and how to recover.
- :class:`RowError`: one bad input row; the stage runner records it (:func:`describe_error`) and goes on.
"""

from __future__ import annotations

import shlex


class StageError(RuntimeError):
    """A stage cannot run at all (its input is missing, its configuration unusable)."""


class ManifestError(StageError):
    """A manifest part cannot be read (empty, truncated, corrupt): the message is one line naming the
    part, the stage whose manifest it is, and the fix (delete the part; the stage redoes its rows)."""

    def __init__(self, path: str, stage: str, problem: str):
        problem = " ".join(problem.split())  # pyarrow's messages can span lines; the CLI prints one
        super().__init__(f"{path}: unreadable part of the {stage} manifest ({problem}); delete it and run "
                         f"`vmas {stage}` again, which redoes the rows it held: rm {shlex.quote(str(path))}")
        self.path, self.stage, self.problem = path, stage, problem

    def __reduce__(self):  # picklable across processes (the default would call __init__ with the message only)
        return type(self), (self.path, self.stage, self.problem)


class CodecGateError(StageError):
    """A trained codec's held-out quality is below ``codec.gate``: it is not used. ``report`` is the
    stage's report (metrics and the gate's verdict), so an orchestrator can record it and fail its check."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}

    def __reduce__(self):
        return type(self), (str(self), self.report)


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
