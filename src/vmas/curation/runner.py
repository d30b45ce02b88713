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
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from vmas.config import Config
from vmas.curation import STAGES
from vmas.curation.batches import BatchView, batch_video_ids, video_id
from vmas.errors import StageError, describe_error
from vmas.io import atomic_write_json
from vmas.layout import manifest_dir, output_dir, summary_path
from vmas.manifest import ERROR, ID, INPUT_ID, KEY, Manifest, content_key
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

    ``batch`` restricts the run to the videos of one ingest batch (a Dagster partition); the
    report then counts that batch's rows, and the stage summary JSON is left as it was. Rows that
    failed are done unless their reason is one of the stage's ``retry_errors`` or ``retry_failed``.
    """
    with Manifest(manifest_dir(cfg, name)).lock():
        return _run_stage(name, cfg, workers, chunk_size, progress, limit, batch)


def _run_stage(name: str, cfg: Config, workers: int, chunk_size: int, progress: bool, limit: int | None,
               batch: str | None) -> StageReport:
    stage = STAGES[name]
    if stage.process is None:
        raise StageError(f"stage {name!r} is not a row stage; run it with its own command")
    started = time.perf_counter()
    settings = stage.settings(cfg, output_dir(cfg, name))
    upstream = Manifest(manifest_dir(cfg, stage.upstream))
    if not upstream.exists():
        raise StageError(f"{name}: no {stage.upstream} manifest in {upstream.root}; run `vmas {stage.upstream}` first")
    videos = None if batch is None else batch_video_ids(manifest_dir(cfg, "ingest"), batch)
    out = Manifest(manifest_dir(cfg, name), stage.schema)
    done = out.done_keys()
    report = StageReport(name)
    current: list[str] = []

    def todo() -> Iterator[tuple[dict, str]]:
        taken = 0
        for row in upstream.iter_rows():
            if not stage.accepts(row) or (videos is not None and video_id(row) not in videos):
                continue
            if limit is not None and taken >= limit:
                return
            taken += 1
            key = content_key(name, stage.version, {f: row.get(f) for f in stage.input_fields}, settings)
            current.append(row[ID])
            if done.get(row[ID]) == key:
                report.skipped += 1
                continue
            yield row, key

    bar = tqdm(desc=name, unit="row", disable=not progress)
    if workers > 1 and stage.warmup is not None:
        stage.warmup()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(stage.start_method)) \
        if workers > 1 else None
    try:
        for chunk in _batched(todo(), chunk_size * max(workers, 1)):
            jobs = [(name, row, key, settings) for row, key in chunk]
            results = pool.map(_apply_job, jobs) if pool else map(_apply_job, jobs)
            rows = [r for rs in results for r in rs]
            out.append(rows)
            report.processed += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    # Drop rows of inputs gone upstream, but only after a full pass: --limit and a batch see a part of them.
    out.compact(keep_inputs=current if limit is None and batch is None else None)
    view = out if videos is None else BatchView(out, videos)
    _summarize(view, report)
    report.seconds = round(time.perf_counter() - started, 3)
    if stage.summarize is not None:
        report.extra = stage.summarize(view, settings)
    if batch is None:
        atomic_write_json(summary_path(cfg, name), report.as_dict())
    log.info("%s: %d processed, %d already done, %d rows, %d errors", name, report.processed, report.skipped,
             report.rows, report.errors, extra={"fields": {"seconds": report.seconds, **report.errors_by_reason}})
    return report


def _summarize(out: Manifest | BatchView, report: StageReport) -> None:
    reasons: Counter[str] = Counter()
    rows = 0
    for row in out.iter_rows([ERROR]):
        rows += 1
        if row[ERROR]:
            reasons[row[ERROR].split(":", 1)[0]] += 1
    report.rows, report.errors, report.errors_by_reason = rows, sum(reasons.values()), dict(reasons)


def read_summary(cfg: Config, name: str) -> dict:
    return json.loads(summary_path(cfg, name).read_text())
