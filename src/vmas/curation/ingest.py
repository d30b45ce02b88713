"""ingest: register raw videos (folders, path lists, DISCO-10M metadata) as rows of the ingest manifest.

Three kinds of source, one manifest:

- **folders** (``paths.data_dir``): a file's identity is its SHA-256 (first 32 hex digits), so the
  same bytes under another name add nothing. New files make one batch (the unit later stages and
  the Dagster partitions go by). Hashes are cached by (path, size, mtime): a re-run reads only what changed.
  Paths under ``paths.data_dir`` are stored relative to it, so a copied or moved project (its data
  folder with it) knows every file (:class:`vmas.curation.batches.RegisteredFiles`).
- **metadata tables**, DISCO-10M (or LAION-DISCO-12M) Parquet: one file, a folder of shards or a
  glob, local or any fsspec URL, streamed in record batches of the needed columns only
  (:mod:`vmas.curation.sources`). A row is a URL to fetch (the ``download`` stage does), with id
  ``yt-<youtube id>``; its metadata stays as typed columns (the 512-d audio embedding as a float32
  fixed-size list). Rows whose source duration is outside ``ingest.min/max_duration_s``, or that
  have no URL, are set aside with their reason in ``ingest.rejected/<batch>.parquet``, before any download.
- **path lists** (CSV/Parquet with a ``path``/``uri`` column): local files are hashed like a
  folder's; remote URIs become URL rows for ``download``. Other columns are kept in ``meta`` (JSON).

Every ``ingest.batch_rows`` rows of a table are one batch, named after the file and the rows'
position; each batch is written as its own manifest group. Memory is bounded by one batch plus
8 bytes per known id (the duplicate filter, :class:`KnownIds`), whatever the number of rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from vmas.config import Config
from vmas.curation.batches import RegisteredFiles, rehashed_path, scan_folder
from vmas.curation.sources import (METADATA_COLUMNS, METADATA_FIELDS, YOUTUBE_WATCH, Chunk, metadata_columns,
                                   read_chunks, url_id, youtube_ids)
from vmas.io import atomic_path, file_sha256
from vmas.layout import manifest_dir
from vmas.manifest import ERROR, ID, INPUT_ID, KEY, Manifest, content_key, schema_with
from vmas.media.stems import REFERENCE_COLUMNS, REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS, reference_stems
from vmas.stage import Stage

log = logging.getLogger(__name__)

SCHEMA = schema_with(
    # the local file, relative to paths.data_dir when under it (read with batches.resolve_path); null for a URL
    pa.field("path", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("source", pa.string()),  # folder | manifest | disco
    pa.field("batch", pa.string()),
    pa.field("meta", pa.string()),  # JSON: a path list's other columns
    *METADATA_FIELDS,  # url, video_title, video_duration_s, track_name, ..., audio_embedding
    # the video's known instrumental and vocal stems, or null (what remove_vocals scores SDR against)
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),
)
REJECTED_SCHEMA = pa.schema([pa.field("source", pa.string()), pa.field("row", pa.int64()),
                             pa.field("url", pa.string()), pa.field("reason", pa.string())])
REJECTED_DIR = "ingest.rejected"  # beside the manifests: one Parquet file per chunk with rejected rows
PATH_COLUMNS = ("path", "uri", "video", "video_path", "file")
# a path list's columns that name a video's reference stems (a manifest column, or its short name)
STEM_COLUMNS = {REFERENCE_INSTRUMENTAL: (REFERENCE_INSTRUMENTAL, "instrumental_path"),
                REFERENCE_VOCALS: (REFERENCE_VOCALS, "vocals_path")}
# every source column a metadata table is read for
METADATA_SOURCE_COLUMNS = [alias for _, aliases in METADATA_COLUMNS.values() for alias in aliases]
FLUSH_EVERY = 256  # new rows per manifest part, when files are hashed


class KnownIds:
    """The ids already ingested, as sorted 64-bit hashes (8 bytes an id), for the duplicate test.

    Kept as a few sorted arrays of doubling sizes (a new one merges with the last while it is at least
    half its size), so adding n ids costs O(n log n) and a lookup O(log² n). A hash collision (odds
    about 1e-5 at 15 M ids) would skip a new video as known; the ids come from Python's ``hash``,
    stable within one process, which is all this filter lives for.
    """

    def __init__(self, manifest: Manifest | None = None):
        """``manifest``: the ids to start from, read at the first lookup (a run with nothing to add reads none)."""
        self._runs: list[np.ndarray] = []
        self._pending = manifest

    def _load(self) -> None:
        if self._pending is not None:
            manifest, self._pending = self._pending, None
            for batch in manifest.iter_batches([ID], batch_size=65536):
                self.add(batch.column(0).to_pylist())

    @staticmethod
    def _hashes(ids: list[str]) -> np.ndarray:
        return np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))

    def add(self, ids: list[str]) -> None:
        self._load()
        if not ids:
            return
        self._runs.append(np.unique(self._hashes(ids)))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer, older = self._runs.pop(), self._runs.pop()
            self._runs.append(np.union1d(older, newer))

    def contains(self, ids: list[str]) -> np.ndarray:
        """A boolean per id: already known."""
        self._load()
        hashes = self._hashes(ids)
        found = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            found |= run[at] == hashes
        return found


class _Rejected:
    """``ingest.rejected/<batch>.parquet``: the rows of a table's chunk set aside, with their reason.

    One file per chunk (the batch it would have been), written atomically, so that ingests of
    different sources on different machines never write the same file, and a re-run rewrites it."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0

    def add(self, batch: str, source: str, rows: list[int], urls: list[str | None], reasons: list[str]) -> None:
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"{batch}.parquet") as tmp:
            pq.write_table(pa.table({"source": [source] * len(rows), "row": rows, "url": urls, "reason": reasons},
                                    schema=REJECTED_SCHEMA), tmp)
        self.count += len(rows)


def ingest(cfg: Config, manifest_root: Path, folders: Iterable[Path] = (), path_manifests: Iterable[str] = (),
           disco: Iterable[str] = (), batch: str | None = None, progress: bool = True) -> dict:
    """Add new videos to the ingest manifest; returns counts (new, known, duplicate, unreadable, rejected)
    and the batches that got new rows.

    ``batch`` names a folder scan's batch (default: a UTC timestamp); tables name theirs by file and
    position. Several ingests may run at once on different sources: each writes only its own batches.
    """
    folders, path_manifests, disco = list(folders), list(path_manifests), list(disco)
    out = Manifest(manifest_root, SCHEMA)
    known = KnownIds(out)
    counts = {"new": 0, "known": 0, "duplicate": 0, "unreadable": 0, "rejected": 0, "batches": []}
    rejected = _Rejected(manifest_root.parent / REJECTED_DIR)
    if folders:
        _ingest_folders(cfg, out, folders, batch or time.strftime("batch-%Y%m%d-%H%M%S", time.gmtime()),
                        known, counts, progress)
    for uri, source in [*((u, "manifest") for u in path_manifests), *((u, "disco") for u in disco)]:
        columns = None if source == "manifest" else METADATA_SOURCE_COLUMNS
        with tqdm(desc=f"ingest {Path(uri).name}", unit="row", disable=not progress) as bar:
            for chunk in read_chunks(uri, columns, cfg.ingest.batch_rows):
                rows = (_path_list_rows(cfg, out, chunk, known, counts, rejected) if source == "manifest"
                        else _metadata_rows(cfg, chunk, known, counts, rejected))
                if rows is not None and len(rows):
                    _write(out.group(chunk.batch), rows, counts, chunk.batch)
                bar.update(chunk.rows.num_rows)
    counts["rejected"] = rejected.count
    counts["batch"] = counts["batches"][0] if len(counts["batches"]) == 1 else None
    log.info("ingest: %d new in %d batches, %d already known, %d duplicates, %d rejected, %d unreadable",
             counts["new"], len(counts["batches"]), counts["known"], counts["duplicate"], counts["rejected"],
             counts["unreadable"], extra={"fields": {"batches": len(counts["batches"])}})
    return counts


def ingest_data_dir(cfg: Config, *, progress: bool = True, batch: str | None = None, logger=None) -> dict:
    """The stage as the pipeline runs it (``vmas curate``, the Dagster asset): register what is new under
    ``paths.data_dir``, as ``batch`` when given. Returns the counts (see :func:`ingest`)."""
    return ingest(cfg, manifest_dir(cfg, "ingest"), [Path(cfg.paths.data_dir)], batch=batch, progress=progress)


def _write(group: Manifest, rows: pa.Table | list[dict], counts: dict, batch: str) -> None:
    group.append(rows)
    counts["new"] += len(rows)
    if batch not in counts["batches"]:
        counts["batches"].append(batch)


def _ingest_folders(cfg: Config, out: Manifest, folders: list[Path], batch: str, known: KnownIds, counts: dict,
                    progress: bool) -> None:
    """Hash new files under ``folders`` into ``batch``, a part every :data:`FLUSH_EVERY` (a kill keeps them)."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{folder}: not a folder")
    files = [p for folder in folders for p in scan_folder(Path(folder), cfg.ingest.extensions)]
    if not files:  # a cluster's data folder is often empty (its videos come from tables): read nothing
        return
    cached = RegisteredFiles(out, cfg.paths.data_dir, rehashed_path(out.root))
    new_rows: list[dict] = []
    for path in tqdm(files, desc="ingest", unit="file", disable=not progress):
        row = _file_row(path, "folder", {}, batch, cached, known, counts)
        if row is not None:
            new_rows.append(row)
        if len(new_rows) >= FLUSH_EVERY:
            _write(out.group(batch), new_rows, counts, batch)
            new_rows = []
    if new_rows:
        _write(out.group(batch), new_rows, counts, batch)
    cached.save()


def _file_row(path: Path, source: str, meta: dict, batch: str, cached: RegisteredFiles, known: KnownIds,
              counts: dict, extra: dict | None = None) -> dict | None:
    """The manifest row of a local file, or None when it is known, a duplicate or unreadable (counted)."""
    path = Path(os.path.abspath(path))  # not resolved: a link in the data folder is recorded where it is
    try:
        stat = path.stat()
        vid = cached.lookup(path, stat)
        registered = vid is not None
        if vid is None:
            vid = file_sha256(path)[:32]
            registered = cached.confirm(path, stat, vid)  # this very file, its time changed (copied, checked out)
    except OSError as exc:
        log.warning("ingest: %s: %s", path, exc.strerror or exc)
        counts["unreadable"] += 1
        return None
    if known.contains([vid])[0]:
        counts["known" if registered else "duplicate"] += 1
        return None
    known.add([vid])
    stems = video_stems(path, meta)
    return {**(extra or {}), ID: vid, INPUT_ID: vid, KEY: row_key(vid, stems), ERROR: None,
            "path": cached.stored(path),
            "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "source": source, "batch": batch,
            "meta": json.dumps(meta, default=str, sort_keys=True), **stems}


def _duration_reason(cfg: Config, seconds: float) -> str:
    """Why a row is rejected for its source duration (a ``reason: detail`` like a row error)."""
    return f"duration: {seconds:g} s is outside [{cfg.ingest.min_duration_s:g}, {cfg.ingest.max_duration_s:g}]"


def _keep_duration(cfg: Config, durations: pa.Array) -> pa.Array:
    """True where the source duration is unknown or within the configured limits."""
    inside = pc.and_(pc.greater_equal(durations, cfg.ingest.min_duration_s),
                     pc.less_equal(durations, cfg.ingest.max_duration_s))
    return pc.fill_null(inside, True)


def _metadata_rows(cfg: Config, chunk: Chunk, known: KnownIds, counts: dict, rejected: _Rejected) -> pa.Table | None:
    """One chunk of a metadata table as new manifest rows (vectorised: no Python object per row but its id)."""
    n = chunk.rows.num_rows
    meta = {k: v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v
            for k, v in metadata_columns(chunk.rows, chunk.file).items()}
    given_id = pc.if_else(pc.match_substring_regex(meta["youtube_id"], r"^[A-Za-z0-9_-]{11}$"),
                          meta["youtube_id"], pa.nulls(n, pa.string()))
    yt = pc.coalesce(youtube_ids(meta["url"]), given_id)
    url = pc.coalesce(meta["url"], pc.binary_join_element_wise(YOUTUBE_WATCH, yt, ""))
    ids = pc.if_else(pc.is_valid(yt), pc.binary_join_element_wise("yt-", yt, ""), pa.nulls(n, pa.string()))
    has_url = pc.is_valid(url)
    keep_duration = _keep_duration(cfg, meta["video_duration_s"])
    ok = pc.and_(has_url, keep_duration)
    if not pc.all(ok).as_py():
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        durations = meta["video_duration_s"].take(pa.array(bad)).to_pylist()
        reasons = ["no_url: no URL or YouTube id" if not has_url[i].as_py() else _duration_reason(cfg, d)
                   for i, d in zip(bad, durations)]
        rejected.add(chunk.batch, chunk.file, (chunk.start + bad).tolist(), url.take(pa.array(bad)).to_pylist(),
                     reasons)
    id_list = ids.to_pylist()
    url_list = url.to_pylist()
    keep_mask = ok.to_numpy(zero_copy_only=False).copy()
    for i in np.flatnonzero(keep_mask):  # a non-YouTube URL's id is its hash
        if id_list[i] is None:
            id_list[i] = url_id(url_list[i])
    seen: set[str] = set()
    for i in np.flatnonzero(keep_mask):  # the same video twice in one chunk: the first row counts
        if id_list[i] in seen:
            keep_mask[i] = False
            counts["duplicate"] += 1
        seen.add(id_list[i])
    candidates = np.flatnonzero(keep_mask)
    is_known = known.contains([id_list[i] for i in candidates])
    counts["known"] += int(is_known.sum())
    take = candidates[~is_known]
    if not len(take):
        return None
    new_ids = [id_list[i] for i in take]
    known.add(new_ids)
    index = pa.array(take)
    ids_array = pa.array(new_ids, pa.string())
    columns = {ID: ids_array, INPUT_ID: ids_array, KEY: ids_array, ERROR: pa.nulls(len(take), pa.string()),
               "path": pa.nulls(len(take), pa.string()), "size_bytes": pa.nulls(len(take), pa.int64()),
               "mtime_ns": pa.nulls(len(take), pa.int64()), "source": pa.array(["disco"] * len(take), pa.string()),
               "batch": pa.array([chunk.batch] * len(take), pa.string()), "meta": pa.nulls(len(take), pa.string()),
               "url": url.take(index)}
    columns.update({f.name: meta[f.name].take(index) for f in METADATA_FIELDS if f.name != "url"})
    columns.update({c: pa.nulls(len(take), pa.string()) for c in REFERENCE_COLUMNS})
    return pa.table([columns[name] for name in SCHEMA.names], schema=SCHEMA)


def _path_list_rows(cfg: Config, out: Manifest, chunk: Chunk, known: KnownIds, counts: dict,
                    rejected: _Rejected) -> list[dict] | None:
    """One chunk of a path list as new manifest rows: local files hashed, remote URIs as URL rows."""
    table = chunk.rows
    column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None:
        raise ValueError(f"{chunk.file}: no column named any of {', '.join(PATH_COLUMNS)}")
    meta_columns = metadata_columns(table, chunk.file)
    keep = _keep_duration(cfg, meta_columns["video_duration_s"]).to_pylist()
    typed = [dict(zip(meta_columns, values)) for values in zip(*(a.to_pylist() for a in meta_columns.values()))]
    known_names = {a for _, aliases in METADATA_COLUMNS.values() for a in aliases}
    base = Path(chunk.file).parent if "://" not in chunk.file else None
    # what this batch already holds: its files' hashes are not read again
    cached = RegisteredFiles(out.group(chunk.batch), cfg.paths.data_dir, rehashed_path(out.root))
    rows, bad = [], []
    for offset, row in enumerate(table.to_pylist()):
        target = row.pop(column)
        if target in (None, ""):
            bad.append((offset, None, f"no_path: empty {column}"))
            continue
        if not keep[offset]:
            bad.append((offset, str(target), _duration_reason(cfg, typed[offset]["video_duration_s"])))
            continue
        target = str(target)
        for name, aliases in STEM_COLUMNS.items():
            given = [row.pop(a) for a in aliases if a in row]
            stem = next((str(g) for g in given if g not in (None, "")), None)
            if stem is not None:
                row[name] = str(_local_path(stem, base).resolve())
        extra = {k: v for k, v in typed[offset].items() if k in SCHEMA.names}
        meta = {k: v for k, v in row.items() if k not in known_names}
        if "://" in target and not target.startswith("file://"):
            vid = url_id(target)
            if known.contains([vid])[0]:
                counts["known"] += 1
                continue
            known.add([vid])
            stems = {c: meta.pop(c, None) for c in REFERENCE_COLUMNS}
            rows.append({**extra, ID: vid, INPUT_ID: vid, KEY: row_key(vid, stems), ERROR: None, "path": None,
                         "size_bytes": None, "mtime_ns": None, "source": "manifest", "batch": chunk.batch,
                         "url": target, "meta": json.dumps(meta, default=str, sort_keys=True), **stems})
        else:
            new = _file_row(_local_path(target, base), "manifest", meta, chunk.batch, cached, known, counts, extra)
            if new is not None:
                rows.append(new)
    rejected.add(chunk.batch, chunk.file, [chunk.start + o for o, _, _ in bad], [u for _, u, _ in bad],
                 [r for _, _, r in bad])
    cached.save()
    return rows or None


def _local_path(target: str, base: Path | None) -> Path:
    """A path list's local entry: relative paths are taken from the list's folder."""
    path = Path(target.removeprefix("file://"))
    return path if path.is_absolute() or base is None else base / path


def video_stems(path: Path, meta: dict) -> dict[str, str | None]:
    """The reference stems of the video at ``path``: those its path list names (taken out of
    ``meta``), else those beside it by the naming of :mod:`vmas.media.stems`."""
    stems = reference_stems(path)
    for column in REFERENCE_COLUMNS:
        given = meta.pop(column, None)
        if given is not None:
            if not Path(given).is_file():
                log.warning("%s: its %s %s is not a file", path, column, given)
            stems[column] = given
    return stems


def row_key(vid: str, stems: dict[str, str | None]) -> str:
    """An ingest row's key: the content hash, and with it the reference stems when there are any.
    Each later stage's key includes its input row's, so recording other stems for a video re-runs
    what depends on them (remove_vocals' SDR), while a video without stems keeps the key it had
    before stems were recorded (its id), and with it every later stage's key."""
    return content_key(vid, stems) if any(stems.values()) else vid


STAGE = Stage(
    name="ingest",
    title="raw videos",
    upstream=None,
    schema=SCHEMA,
    run=ingest_data_dir,  # ingest reads sources, not a manifest: see ingest()
    settings=lambda cfg, out_dir: {"extensions": cfg.ingest.extensions},
    description="register raw videos by content hash",
)
