"""``run_stage``: the one place where a stage's manifest is read, work is skipped or done, and written.

The CLI, DVC and Dagster all call this. For every upstream row the stage accepts, the row's key
(its deciding columns, the stage's settings and version) is compared with the key stored in the
stage's manifest: equal means done, so a second run does no work. Work is done in chunks, each
written as a manifest part when finished, so a killed run loses at most the chunk in flight and
the next run resumes. Rows that fail keep their ``error``; the stage goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from vmas.config import Config
from vmas.curation import STAGES
from vmas.errors import StageError, describe_error
from vmas.io import atomic_write_json
from vmas.layout import manifest_dir, output_dir, summary_path
from vmas.manifest import ERROR, ID, INPUT_ID, KEY, Manifest, content_key
from vmas.processes import worker_pool
from vmas.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class StageReport:
    stage: str
    processed: int = 0  # inputs worked on in this run
    skipped: int = 0  # inputs already done with the same key
    rows: int = 0  # rows in the manifest afterwards
    errors: int = 0  # rows with an error afterwards
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _apply(stage: Stage, row: dict, key: str, settings: dict) -> list[dict]:
    try:
        out = stage.process(row, settings) or []
        if not out:
            raise StageError(f"{stage.name} produced no row for {row.get(ID)}")
    except Exception as exc:  # noqa: BLE001 - a bad row is recorded, never fatal
        log.debug("%s failed on %s", stage.name, row.get(ID), exc_info=True)
        # an error row keeps the input's columns that this stage also has (path, video_id, ...)
        carried = {k: row[k] for k in stage.schema.names if k in row and k not in (ID, INPUT_ID, KEY, ERROR)}
        out = [{**carried, ERROR: describe_error(exc, row.get("path") or row.get("source_path"))}]
    result = []
    for item in out:
        item = dict(item)
        item.setdefault(ID, row[ID])
        item.setdefault(ERROR, None)
        item[INPUT_ID], item[KEY] = row[ID], key
        result.append(item)
    return result


def _apply_job(job: tuple[str, dict, str, dict]) -> list[dict]:
    name, row, key, settings = job
    return _apply(STAGES[name], row, key, settings)


def _batched(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(items, size)):
        yield chunk


def run_stage(name: str, cfg: Config, workers: int = 1, chunk_size: int = 16, progress: bool = True,
              limit: int | None = None, batch: str | None = None, retry_failed: bool = False) -> StageReport:
    """Run stage ``name`` over its upstream manifest; returns what it did (also written as JSON).

    Work goes batch by batch: each ingest batch's upstream rows are read from that batch's group and
    written to the same group of this stage's manifest, so runs of different batches (Dagster
    partitions, on different machines) never write the same files. ``batch`` restricts the run to
    one batch; the report then counts that batch's rows, and the stage summary JSON is left as it
    was. Rows that failed are done unless their reason is one of the stage's ``retry_errors`` or
    ``retry_failed``.
    """
    stage = STAGES[name]
    if stage.process is None:
        raise StageError(f"stage {name!r} is not a row stage; run it with its own command")
    started = time.perf_counter()
    settings = stage.settings(cfg, output_dir(cfg, name))
    keyed = {k: v for k, v in settings.items() if k not in stage.unkeyed}
    upstream = Manifest(manifest_dir(cfg, stage.upstream))
    if not upstream.exists():
        raise StageError(f"{name}: no {stage.upstream} manifest in {upstream.root}; run `vmas {stage.upstream}` first")
    out = Manifest(manifest_dir(cfg, name), stage.schema)
    groups = upstream.groups() if batch is None else [batch]
    if batch is not None and not upstream.group(batch).exists():
        raise StageError(f"{name}: batch {batch!r} has no rows in {upstream.root} (run `vmas {stage.upstream}` for it "
                         f"first; manifests written before batches had folders are run whole: `vmas {name}`)")
    retry = set(stage.retry_errors)

    def redo(error: str) -> bool:
        return retry_failed or error.split(":", 1)[0] in retry

    report = StageReport(name)
    bar = tqdm(desc=name, unit="row", disable=not progress)
    if stage.threads is not None:
        pool = ThreadPoolExecutor(max_workers=stage.threads(cfg), thread_name_prefix=name)
    elif workers > 1:
        if stage.warmup is not None:
            stage.warmup()
        pool = worker_pool(workers, stage.start_method)  # workers die with this process (kill -9 too)
    else:
        pool = None
    per_chunk = chunk_size * (stage.threads(cfg) if stage.threads is not None else max(workers, 1))
    taken = 0
    try:
        for group in groups:
            todo, current = _todo(stage, upstream.group(group), out.group(group).done_keys(redo), keyed, report,
                                  None if limit is None else limit - taken)
            for chunk in _batched(todo, per_chunk):
                jobs = [(name, row, key, settings) for row, key in chunk]
                results = pool.map(_apply_job, jobs) if pool else map(_apply_job, jobs)
                out.group(group).append([r for rs in results for r in rs])
                report.processed += len(chunk)
                bar.update(len(chunk))
            taken += len(current)
            # Drop rows of inputs gone upstream, but only after a full pass over the batch (not with --limit).
            out.group(group).compact(keep_inputs=current if limit is None else None)
            if limit is not None and taken >= limit:
                break
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    if batch is None and limit is None:
        for gone in set(out.groups()) - set(groups):  # a batch no longer upstream
            out.drop_group(gone)
    view = out if batch is None else out.group(batch)
    _summarize(view, report)
    report.seconds = round(time.perf_counter() - started, 3)
    if stage.summarize is not None:
        report.extra = stage.summarize(view, settings)
    if batch is None:
        atomic_write_json(summary_path(cfg, name), report.as_dict())
    log.info("%s: %d processed, %d already done, %d rows, %d errors", name, report.processed, report.skipped,
             report.rows, report.errors, extra={"fields": {"seconds": report.seconds, **report.errors_by_reason}})
    return report


def _todo(stage: Stage, upstream: Manifest, done: dict[str, str], keyed: dict, report: StageReport,
          limit: int | None) -> tuple[Iterator[tuple[dict, str]], list[str]]:
    """The rows of one upstream group still to do, each with its key; and (filled as it is consumed)
    the ids of every upstream row the stage accepts."""
    current: list[str] = []

    def rows() -> Iterator[tuple[dict, str]]:
        for row in upstream.iter_rows():
            if not stage.accepts(row):
                continue
            if limit is not None and len(current) >= limit:
                return
            current.append(row[ID])
            key = content_key(stage.name, stage.version, {f: row.get(f) for f in stage.input_fields}, keyed)
            if done.get(row[ID]) == key:
                report.skipped += 1
                continue
            yield row, key

    return rows(), current


def _summarize(out: Manifest, report: StageReport) -> None:
    reasons: Counter[str] = Counter()
    rows = 0
    for row in out.iter_rows([ERROR]):
        rows += 1
        if row[ERROR]:
            reasons[row[ERROR].split(":", 1)[0]] += 1
    report.rows, report.errors, report.errors_by_reason = rows, sum(reasons.values()), dict(reasons)


def read_summary(cfg: Config, name: str) -> dict:
    return json.loads(summary_path(cfg, name).read_text())
