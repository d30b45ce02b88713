"""ingest: register raw videos by content hash, from folders, path manifests or DISCO-10M metadata.

Identity is the file's SHA-256 (first 32 hex digits): ingesting the same file again, or the same
bytes under another name, adds nothing; new files are appended as a new *batch* (the unit later
stages and the Dagster sensor partition by). Hashes are cached by (path, size, mtime), so a
re-run over a large folder reads only what changed. DISCO-10M rows whose media is not under the
media root are listed in ``ingest.missing.parquet`` with the reason, not treated as errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from vmas.config import Config
from vmas.curation.batches import scan_folder
from vmas.curation.sources import youtube_id
from vmas.io import atomic_path, file_sha256
from vmas.layout import manifest_dir, output_dir
from vmas.manifest import ID, Manifest, content_key, schema_with
from vmas.media.stems import REFERENCE_COLUMNS, REFERENCE_INSTRUMENTAL, REFERENCE_VOCALS, reference_stems
from vmas.stage import Stage

log = logging.getLogger(__name__)

SCHEMA = schema_with(
    pa.field("path", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("source", pa.string()),
    pa.field("batch", pa.string()),
    pa.field("meta", pa.string()),  # JSON: the source's metadata for this video (DISCO columns, ...)
    # the video's known instrumental and vocal stems, or null (what remove_vocals scores SDR against)
    *(pa.field(column, pa.string()) for column in REFERENCE_COLUMNS),
)
MISSING_SCHEMA = pa.schema([pa.field("source", pa.string()), pa.field("video_url_youtube", pa.string()),
                            pa.field("youtube_id", pa.string()), pa.field("reason", pa.string())])
PATH_COLUMNS = ("path", "uri", "video", "video_path", "file")
# a path list's columns that name a video's reference stems (a manifest column, or its short name)
STEM_COLUMNS = {REFERENCE_INSTRUMENTAL: (REFERENCE_INSTRUMENTAL, "instrumental_path"),
                REFERENCE_VOCALS: (REFERENCE_VOCALS, "vocals_path")}
FLUSH_EVERY = 256  # new rows per manifest part


def read_path_manifest(uri: str, cache_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Paths (or fsspec URIs) listed in a CSV or Parquet file's ``path``/``uri`` column, each with the
    row's other columns. Reference stems given in :data:`STEM_COLUMNS` are found like the videos and
    returned under their manifest column names."""
    import fsspec
    import pyarrow.csv as pacsv

    with fsspec.open(uri, "rb") as f:
        table = pq.read_table(f) if uri.endswith(".parquet") else pacsv.read_csv(f)
    column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None:
        raise ValueError(f"{uri}: no column named any of {', '.join(PATH_COLUMNS)}")
    base = Path(uri).parent if "://" not in uri else None
    for row in table.to_pylist():
        target = str(row.pop(column))
        for name, aliases in STEM_COLUMNS.items():
            given = [row.pop(a) for a in aliases if a in row]
            stem = next((str(g) for g in given if g not in (None, "")), None)
            if stem is not None:
                row[name] = str(_local_path(stem, base, cache_dir).resolve())
        if "://" in target and not target.startswith("file://"):
            yield _localize(target, cache_dir), {**row, "uri": target}
        else:
            yield _local_path(target, base, cache_dir), row


def _local_path(target: str, base: Path | None, cache_dir: Path) -> Path:
    """A path list's entry as a local path: remote URIs copied into the cache, relative paths
    taken from the list's folder."""
    if "://" in target and not target.startswith("file://"):
        return _localize(target, cache_dir)
    path = Path(target.removeprefix("file://"))
    return path if path.is_absolute() or base is None else base / path


def _localize(uri: str, cache_dir: Path) -> Path:
    """Copy a remote file (s3://, gs://, ... through fsspec) into the local cache once."""
    import fsspec

    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:24] / Path(urlparse(uri).path).name
    if not target.exists():
        with fsspec.open(uri, "rb") as src, atomic_path(target) as tmp, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    return target


def read_disco_metadata(uri: str, media_root: Path | None, extensions: Iterable[str],
                        downloader: str | None = None) -> tuple[list[tuple[Path, dict]], list[dict]]:
    """DISCO-10M-style rows: ``(present media, metadata)`` pairs, and the rows whose media is missing."""
    import fsspec

    with fsspec.open(uri, "rb") as f:
        table = pq.read_table(f)
    if "video_url_youtube" not in table.column_names:
        raise ValueError(f"{uri}: not DISCO-10M metadata (no video_url_youtube column)")
    present, missing = [], []
    for row in table.to_pylist():
        url = row.get("video_url_youtube") or ""
        vid = youtube_id(url)
        if vid is None:
            missing.append({"source": uri, "video_url_youtube": url, "youtube_id": None, "reason": "no YouTube id in URL"})
            continue
        if media_root is None:
            missing.append({"source": uri, "video_url_youtube": url, "youtube_id": vid,
                            "reason": "ingest.media_root is not set"})
            continue
        found = next((media_root / f"{vid}.{e}" for e in extensions if (media_root / f"{vid}.{e}").is_file()), None)
        if found is None and downloader:
            found = _download(downloader, url, media_root / f"{vid}.mp4")
        if found is None:
            missing.append({"source": uri, "video_url_youtube": url, "youtube_id": vid,
                            "reason": f"no {vid}.{{{','.join(extensions)}}} under {media_root}"})
        else:
            present.append((found, {k: v for k, v in row.items() if v is not None}))
    return present, missing


def _download(command: str, url: str, out: Path) -> Path | None:
    """Run the configured downloader (e.g. yt-dlp) for one URL; None when it leaves no file."""
    args = [a.format(out=str(out), url=url) for a in shlex.split(command)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0 or not out.is_file():
        log.warning("download failed for %s: %s", url, result.stderr.strip()[-300:])
        return None
    return out


def ingest(cfg: Config, manifest_root: Path, folders: Iterable[Path] = (), path_manifests: Iterable[str] = (),
           disco: Iterable[str] = (), batch: str | None = None, progress: bool = True) -> dict:
    """Add new videos to the ingest manifest; returns counts (new, known, duplicates, missing)."""
    with Manifest(manifest_root).lock():
        return _ingest(cfg, manifest_root, folders, path_manifests, disco, batch, progress)


def ingest_data_dir(cfg: Config, *, progress: bool = True, batch: str | None = None, logger=None) -> dict:
    """The stage as the pipeline runs it (``vmas curate``, the Dagster asset): register what is new under
    ``paths.data_dir``, as ``batch`` when given. Returns the counts (see :func:`ingest`)."""
    return ingest(cfg, manifest_dir(cfg, "ingest"), [Path(cfg.paths.data_dir)], batch=batch, progress=progress)


def _ingest(cfg: Config, manifest_root: Path, folders: Iterable[Path], path_manifests: Iterable[str],
            disco: Iterable[str], batch: str | None, progress: bool) -> dict:
    out = Manifest(manifest_root, SCHEMA)
    batch = batch or time.strftime("batch-%Y%m%d-%H%M%S", time.gmtime())
    known_ids: set[str] = set()
    cached: dict[tuple[str, int, int], str] = {}
    for row in out.iter_rows([ID, "path", "size_bytes", "mtime_ns"]):
        known_ids.add(row[ID])
        cached[(row["path"], row["size_bytes"], row["mtime_ns"])] = row[ID]

    candidates: list[tuple[Path, str, dict]] = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"{folder}: not a folder")
        candidates += [(p, "folder", {}) for p in scan_folder(Path(folder), cfg.ingest.extensions)]
    cache_dir = output_dir(cfg, "ingest") / "remote"
    for uri in path_manifests:
        candidates += [(p, "manifest", meta) for p, meta in read_path_manifest(uri, cache_dir)]
    missing: list[dict] = []
    for uri in disco:
        present, lost = read_disco_metadata(uri, cfg.ingest.media_root, cfg.ingest.extensions, cfg.ingest.downloader)
        candidates += [(p, "disco", meta) for p, meta in present]
        missing += lost

    new_rows, counts = [], {"new": 0, "known": 0, "duplicate": 0, "unreadable": 0, "missing": len(missing)}
    for path, source, meta in tqdm(candidates, desc="ingest", unit="file", disable=not progress):
        path = path.resolve()
        try:
            stat = path.stat()
            vid = cached.get((str(path), stat.st_size, stat.st_mtime_ns)) or file_sha256(path)[:32]
        except OSError as exc:
            missing.append({"source": source, "video_url_youtube": meta.get("video_url_youtube"),
                            "youtube_id": None, "reason": f"{path}: {exc.strerror or exc}"})
            counts["unreadable"] += 1
            continue
        if vid in known_ids:
            counts["known" if (str(path), stat.st_size, stat.st_mtime_ns) in cached else "duplicate"] += 1
            continue
        known_ids.add(vid)
        stems = video_stems(path, meta)
        new_rows.append({ID: vid, "input_id": vid, "key": row_key(vid, stems), "error": None, "path": str(path),
                         "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "source": source,
                         "batch": batch, "meta": json.dumps(meta, default=str, sort_keys=True), **stems})
        counts["new"] += 1
        if len(new_rows) >= FLUSH_EVERY:  # a killed ingest keeps what it hashed
            out.append(new_rows)
            new_rows = []
    out.append(new_rows)
    if missing or disco:
        with atomic_path(manifest_root.parent / "ingest.missing.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(missing, schema=MISSING_SCHEMA), tmp)
    counts["batch"] = batch if counts["new"] else None
    log.info("ingest: %d new, %d already known, %d duplicates, %d missing", counts["new"], counts["known"],
             counts["duplicate"], counts["missing"], extra={"fields": {"batch": counts["batch"]}})
    return counts


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
