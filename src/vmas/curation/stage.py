"""What a curation stage is: a plain function over one manifest row, and how to call it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from vmas.config import Config


@dataclass(frozen=True)
class Stage:
    """One curation stage.

    ``process(row, settings)`` turns one upstream row into output rows (each a dict of this
    stage's columns, ``id`` defaulting to the input's id). It may raise: the runner records the
    error on the row and goes on. ``settings(cfg, out_dir)`` picks the parameters the stage
    depends on (a JSON-able dict; part of every row's key, so changing one re-runs the stage).
    """

    name: str
    upstream: str | None
    schema: pa.Schema
    process: Callable[[dict, dict], list[dict]] | None
    settings: Callable[[Config, Path], dict]
    accepts: Callable[[dict], bool] = lambda row: row.get("error") is None
    input_fields: tuple[str, ...] = ("id",)
    version: int = 1  # bump when the stage's code changes its results
    # Run once in the parent before worker processes fork: JIT-compile what the workers use
    # (librosa's numba functions), so they inherit it instead of racing to write numba's disk cache.
    warmup: Callable[[], None] | None = None
    description: str = ""
    # How worker processes start: "fork" (cheap, inherits the warm-up) unless the parent has run
    # torch, whose OpenMP thread pool does not survive a fork (the children hang): then "spawn".
    start_method: str = "fork"
    # Dataset-level numbers for the stage's summary JSON (e.g. mean similarity), from its manifest.
    summarize: Callable[[Any, dict], dict] | None = None


class StageError(RuntimeError):
    """A stage cannot run at all (its input is missing, its configuration unusable)."""


def describe_error(exc: BaseException, path: str | None = None) -> str:
    """``"<reason>: <detail>"`` with the file named, as stored in a row's ``error``."""
    text = str(exc).strip() or type(exc).__name__
    if path and path not in text:
        text = f"{path}: {text}"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return f"{reason}: {text}"


class RowError(ValueError):
    """A bad input row: recorded with ``reason`` (a short tag the summary counts by) and skipped."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
