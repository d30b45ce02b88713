"""What a pipeline stage is: its name, what it needs first, how it runs, and what its output is called.

A stage runs one of two ways:

- **row by row** (``process``): a plain function over one row of its ``upstream`` manifest; the
  runner (:func:`vmas.curation.runner.run_stage`) reads, skips what is done, calls and writes;
- **whole** (``run``): one call over everything it reads (``ingest`` scans sources, ``train_codec``
  trains on every clip), returning a report dict.

The ordered registry of every stage is :data:`vmas.curation.STAGES`; the CLI commands, the Dagster
assets and their dependencies, ``materialize``'s run order, ``vmas curate`` and the ``dvc.yaml`` check
are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

import pyarrow as pa

from vmas.config import Config


class WholeRun(Protocol):
    """A whole stage's entry point: does everything (resuming what is done) and returns its report.

    ``batch`` names the ingest batch a Dagster partition stands for (None: all of them); ``logger``
    is a Lightning logger (MLflow's) for stages that are ``tracked``.
    """

    def __call__(self, cfg: Config, *, progress: bool = True, batch: str | None = None, logger: Any = None) -> dict: ...


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    ``process(row, settings)`` turns one upstream row into output rows (each a dict of this
    stage's columns, ``id`` defaulting to the input's id). It may raise: the runner records the
    error on the row and goes on. ``settings(cfg, out_dir)`` picks the parameters the stage
    depends on (a JSON-able dict; part of every row's key, so changing one re-runs the stage).
    """

    name: str
    upstream: str | None  # the manifest it reads row by row (or, for a whole stage, mainly reads)
    schema: pa.Schema | None = None  # its manifest's columns (None: it writes no manifest)
    process: Callable[[dict, dict], list[dict]] | None = None  # row by row ...
    run: WholeRun | None = None  # ... or whole
    settings: Callable[[Config, Path], dict] = lambda cfg, out_dir: {}
    title: str = ""  # what its output is, in the words of the pipeline ("probed videos")
    description: str = ""  # what it does (one line, lower case, no full stop)
    after: tuple[str, ...] = ()  # other stages that must be done first (tokenize needs train_codec's codec)
    # "batch": runs per ingest batch (a Dagster partition); "dataset": over every batch at once
    scope: Literal["batch", "dataset"] = "batch"
    tracked: Callable[[Config], bool] = lambda cfg: False  # whether a run logs to MLflow (needs a logger)
    accepts: Callable[[dict], bool] = lambda row: row.get("error") is None
    input_fields: tuple[str, ...] = ("id",)
    version: int = 1  # bump when the stage's code changes its results
    # Run once in the parent before worker processes fork: JIT-compile what the workers use
    # (librosa's numba functions), so they inherit it instead of racing to write numba's disk cache.
    warmup: Callable[[], None] | None = None
    # How worker processes start: "fork" (cheap, inherits the warm-up) unless the parent has run
    # torch, whose OpenMP thread pool does not survive a fork (the children hang): then "spawn".
    start_method: str = "fork"
    # Dataset-level numbers for the stage's summary JSON (e.g. mean similarity), from its manifest.
    summarize: Callable[[Any, dict], dict] | None = None
    # Work that waits on the network rather than the CPU (download): run ``process`` in this many
    # threads of one process (``None``: ``workers`` processes, as the caller asks).
    threads: Callable[[Config], int] | None = None
    # Error reasons (the ``RowError`` tag) that are worth another try on the next run (a server's
    # 503, a timeout); rows failed for any other reason stay failed until asked (``retry_failed``).
    retry_errors: tuple[str, ...] = ()
    # Settings a row's result does not depend on (how many at once, timeouts): left out of its key,
    # so changing them redoes nothing.
    unkeyed: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.process is None) == (self.run is None):
            raise ValueError(f"stage {self.name}: give exactly one of process (row by row) and run (whole)")

    @property
    def row_wise(self) -> bool:
        return self.process is not None

    @property
    def needs(self) -> tuple[str, ...]:
        """Every stage that must be done before this one: ``upstream`` and ``after``."""
        return tuple(n for n in (self.upstream, *self.after) if n is not None)
