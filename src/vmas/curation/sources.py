"""Where videos come from: metadata tables (DISCO-10M, LAION-DISCO-12M, path lists) read as a stream.

A source is one table, a folder of them, or a glob, local or any fsspec URL (``s3://``,
``hf://``...). It is read as Arrow record batches with only the columns vmas keeps, so memory
depends on the batch size, never on the number of rows. Each source file's rows are cut into
*chunks* of ``rows`` rows by position; a chunk is one ingest batch (a Dagster partition), named after
the file and the chunk's index, so reading the same file again names the same batches.

The metadata columns are given one name in the manifest whatever the table's layout
(:data:`METADATA_COLUMNS`): DISCO-10M's published names, LAION-DISCO-12M's where they differ.
Shared by ingest (which registers rows) and download (which fetches them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.compute as pc

_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")
# a YouTube id inside a watch / youtu.be / shorts / embed URL (vectorised over a column with Arrow)
_YOUTUBE_IN_URL = r"(?:[?&]v=|youtu\.be/|/shorts/|/embed/|/live/)(?P<yt>[A-Za-z0-9_-]{11})"
YOUTUBE_WATCH = "https://www.youtube.com/watch?v="
EMBEDDING_DIM = 512  # DISCO-10M's audio_embedding_spotify (CLAP)

# manifest column -> (type, the source columns it is read from, first present wins)
METADATA_COLUMNS: dict[str, tuple[pa.DataType, tuple[str, ...]]] = {
    "url": (pa.string(), ("video_url_youtube", "video_url", "url")),
    "youtube_id": (pa.string(), ("youtube_id", "song_id", "video_id")),  # LAION-DISCO-12M: song_id
    "video_title": (pa.string(), ("video_title_youtube", "title")),
    "video_duration_s": (pa.float64(), ("video_duration_youtube_sec", "duration", "duration_s")),
    "track_name": (pa.string(), ("track_name_spotify", "track_name")),
    "artist_name": (pa.string(), ("primary_artist_name_spotify", "artist_name_spotify", "artist_names",
                                  "artist_name")),
    "track_id": (pa.string(), ("track_id_spotify", "track_id", "isrc")),
    "similarity_duration": (pa.float32(), ("similarity_duration",)),
    "similarity_query_video_title": (pa.float32(), ("similarity_query_video_title",)),
    "similarity_query_description": (pa.float32(), ("similarity_query_description",)),
    "similarity_audio": (pa.float32(), ("similarity_audio",)),
    "audio_embedding": (pa.list_(pa.float32(), EMBEDDING_DIM), ("audio_embedding_spotify", "audio_embedding")),
}
# the columns of a metadata row in the ingest manifest (youtube_id only helps make the URL and id)
METADATA_FIELDS = [pa.field(name, kind) for name, (kind, _) in METADATA_COLUMNS.items() if name != "youtube_id"]


def youtube_id(url: str) -> str | None:
    """The video id of a YouTube URL (watch, youtu.be, shorts), or None."""
    parsed = urlparse(url)
    if parsed.hostname and parsed.hostname.endswith("youtu.be"):
        candidate = parsed.path.lstrip("/")
    else:
        candidate = (parse_qs(parsed.query).get("v") or [parsed.path.rstrip("/").rsplit("/", 1)[-1]])[0]
    return candidate if candidate and _YOUTUBE_ID.match(candidate) else None


def url_id(url: str) -> str:
    """A URL row's id before anything is downloaded: ``yt-<id>`` for YouTube, else a hash of the URL."""
    vid = youtube_id(url) if "youtu" in url else None
    return f"yt-{vid}" if vid else f"url-{hashlib.sha256(url.encode()).hexdigest()[:24]}"


def expand(uri: str) -> list[str]:
    """The table files a source names: the file, the Parquet/CSV files under a folder, or a glob's matches."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if any(c in path for c in "*?["):
        found = sorted(fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.find(path) if p.endswith((".parquet", ".csv", ".csv.gz")))
    elif fs.exists(path):
        found = [path]
    else:
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if not found:
        raise FileNotFoundError(f"{uri}: no Parquet or CSV files there")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol in ("file", "local") else fs.unstrip_protocol(p) for p in found]


def chunk_name(file: str, index: int) -> str:
    """The ingest batch of chunk ``index`` of ``file``: ``<file stem>-<hash of its URL>-<index>``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", PurePosixPath(urlparse(file).path if "://" in file else file).name
                  .split(".")[0])[:40] or "table"
    return f"{stem}-{hashlib.sha256(file.encode()).hexdigest()[:8]}-{index:05d}"


@dataclass
class Chunk:
    """``rows`` of source ``file`` from row ``start`` on, making up ingest batch ``batch``."""

    file: str
    batch: str
    start: int
    rows: pa.Table


def read_chunks(uri: str, columns: list[str] | None, rows: int, read_rows: int = 8192) -> Iterator[Chunk]:
    """Stream every file of a source as chunks of ``rows`` rows (the last one of a file may be shorter).

    ``columns``: the source columns to read when present (None: all). Memory holds one chunk."""
    for file in expand(uri):
        pending: list[pa.RecordBatch] = []
        held = index = 0
        for batch in _record_batches(file, columns, read_rows):
            while batch.num_rows:
                take = min(rows - held, batch.num_rows)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == rows:
                    yield Chunk(file, chunk_name(file, index), index * rows, pa.Table.from_batches(pending))
                    pending, held, index = [], 0, index + 1
        if held:
            yield Chunk(file, chunk_name(file, index), index * rows, pa.Table.from_batches(pending))


def _record_batches(file: str, columns: list[str] | None, read_rows: int) -> Iterator[pa.RecordBatch]:
    import fsspec
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with fsspec.open(file, "rb", compression="infer") as f:
        if file.endswith(".parquet"):
            # read column chunks in 1 MiB pieces, and keep nothing read: pre_buffer (the default) caches
            # every row group read until the file is closed (apache/arrow#39808), so memory grew with rows
            table = pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)
            names = table.schema_arrow.names
            wanted = None if columns is None else [c for c in columns if c in names]
            yield from table.iter_batches(batch_size=read_rows, columns=wanted)
        else:
            reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 22))
            for batch in reader:
                wanted = [c for c in (columns or batch.schema.names) if c in batch.schema.names]
                yield batch.select(wanted)


def metadata_columns(table: pa.Table, where: str) -> dict[str, pa.ChunkedArray]:
    """The known metadata of ``table`` under the manifest's names, cast to the manifest's types
    (missing ones are nulls). A column that cannot be cast is a clear error naming ``where``."""
    out = {}
    for name, (kind, aliases) in METADATA_COLUMNS.items():
        given = next((a for a in aliases if a in table.column_names), None)
        if given is None:
            out[name] = pa.nulls(table.num_rows, kind)
            continue
        column = table.column(given)
        if pa.types.is_list(column.type) and pa.types.is_string(kind):  # LAION's artist_names
            column = pc.binary_join(column, ", ")
        elif name == "video_duration_s" and pa.types.is_string(column.type):
            column = _clock_seconds(column)
        try:
            out[name] = column.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{where}: column {given!r} ({column.type}) cannot be read as {name} ({kind}): {exc}") \
                from None
    return out


def _clock_seconds(column: pa.ChunkedArray) -> pa.Array:
    """``"3:45"``/``"1:02:03"``/``"225"`` durations as seconds."""
    values = []
    for text in column.to_pylist():
        try:
            parts = [float(p) for p in str(text).split(":")] if text not in (None, "") else None
        except ValueError:
            parts = None
        values.append(None if parts is None else sum(p * 60 ** i for i, p in enumerate(reversed(parts))))
    return pa.array(values, pa.float64())


def youtube_ids(urls: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The YouTube id in each URL, or null (vectorised)."""
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    matched = pc.extract_regex(urls, _YOUTUBE_IN_URL)
    return pc.if_else(pc.is_valid(matched), pc.struct_field(matched, "yt"), pa.nulls(len(urls), pa.string()))
