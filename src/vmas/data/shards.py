"""The training set as WebDataset shards: the format, the index, and reading one shard.

A shard is a plain tar (WebDataset's layout: a sample's files are consecutive and share a key)::

    <key>.mp4               the clip's training video, its bytes as ``clip`` wrote them
    <key>.codes.npy         [K, T] int16 EnCodec codes
    <key>.beat_weights.npy  [T] float32 beat-aligned loss weights
    <key>.json              {"id", "video_id", "key", "codec_sha256"}: ids and provenance

Shards live under one root URL (any fsspec URL; ``http(s)://`` to read a served copy)::

    <root>/train/<batch>/shard-000000.tar   train shards of one ingest batch
    <root>/val/<batch>/shard-000000.tar     held-out videos' shards
    <root>/index.parquet                    one row per shard: path (relative to the root), split,
                                            clips, bytes, sha256, first_id, codec_sha256

The index is all a reader loads (a few thousand rows at the paper's scale, not millions of clips).
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

INDEX_FILE = "index.parquet"
SPLITS = ("train", "val")
MEMBERS = ("mp4", "codes.npy", "beat_weights.npy", "json")
INDEX_SCHEMA = pa.schema([
    pa.field("path", pa.string()),  # relative to the root
    pa.field("split", pa.string()),
    pa.field("clips", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("first_id", pa.string()),
    pa.field("codec_sha256", pa.string()),
])


class ShardError(RuntimeError):
    """A shard that cannot be read, or does not hold what the index says; the message names it."""


def sample_key(clip_id: str) -> str:
    """A clip id as a WebDataset key: no dots (the key ends at the first one) and no slashes."""
    return clip_id.replace("/", "__").replace(".", "_")


def encode_sample(clip_id: str, video_id: str, key: str, codec_sha256: str, video: bytes, codes: np.ndarray,
                  beat_weights: np.ndarray) -> dict[str, bytes]:
    """One sample's tar members (suffix -> bytes); ``codes`` ``[K, T]`` int16, ``beat_weights`` ``[T]`` float32."""
    def npy(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()

    meta = {"id": clip_id, "video_id": video_id, "key": key, "codec_sha256": codec_sha256}
    return {"__key__": sample_key(clip_id), "mp4": video, "codes.npy": npy(codes.astype(np.int16)),
            "beat_weights.npy": npy(beat_weights.astype(np.float32)), "json": json.dumps(meta).encode()}


TAR_RECORD = 10240  # tarfile's default record size: the file is padded to a multiple of it


def tar_size(sample: dict[str, bytes]) -> int:
    """The bytes a sample takes in a tar: a 512-byte header per member, data padded to 512."""
    return sum(512 + -(-len(v) // 512) * 512 for k, v in sample.items() if not k.startswith("__"))


def tar_file_size(members: int) -> int:
    """The size of a tar file whose members take ``members`` bytes: plus the two zero blocks that end
    it, padded to a whole record."""
    return -(-(members + 1024) // TAR_RECORD) * TAR_RECORD


def decode_arrays(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(codes [K, T] int16, beat_weights [T] float32)`` of a sample read from a shard."""
    return (np.load(io.BytesIO(sample["codes.npy"]), allow_pickle=False),
            np.load(io.BytesIO(sample["beat_weights.npy"]), allow_pickle=False))


@dataclass(frozen=True)
class ShardEntry:
    """One row of the index, with the shard's full URL."""

    url: str
    split: str
    clips: int
    bytes: int
    sha256: str
    first_id: str
    codec_sha256: str


def join_url(root: str, path: str) -> str:
    return posixpath.join(str(root).rstrip("/"), path)


def read_shard_index(root: str) -> list[ShardEntry]:
    """The shards under ``root`` (their index), ordered by first clip id (so the order does not depend
    on where the shards are kept)."""
    import fsspec

    url = join_url(root, INDEX_FILE)
    try:
        with fsspec.open(url, "rb") as f:
            table = pq.read_table(io.BytesIO(f.read()))
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no shard index; run `vmas shard` (or point train.shards at its output)") \
            from None
    missing = set(INDEX_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ShardError(f"{url}: not a shard index (no column {', '.join(sorted(missing))})")
    rows = table.to_pylist()
    entries = [ShardEntry(join_url(root, r["path"]), r["split"], r["clips"], r["bytes"], r["sha256"], r["first_id"],
                          r["codec_sha256"]) for r in rows]
    return sorted(entries, key=lambda e: (e.first_id, e.url))


def iter_shard(url: str, clips: int | None = None) -> Iterator[dict]:
    """The samples of one shard in stored order (``{"__key__", "mp4", "codes.npy", "beat_weights.npy",
    "json"}``, bytes); streamed, one sample in memory. Raises :class:`ShardError` naming the shard for
    a missing, truncated or corrupt shard, an incomplete sample, or fewer or more samples than ``clips``."""
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    count = 0
    try:
        with fsspec.open(url, "rb", block_size=1 << 22) as stream:
            files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
            for sample in group_by_keys(files):
                lacking = [m for m in MEMBERS if m not in sample]
                if lacking:
                    raise ShardError(f"shard {url}: truncated or corrupt: sample {sample['__key__']!r} has no "
                                     f"{', '.join(lacking)}")
                count += 1
                yield sample
    except ShardError:
        raise
    except FileNotFoundError as exc:
        raise ShardError(f"shard {url}: not found ({exc})") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ShardError(f"shard {url}: truncated or corrupt after {count} samples ({type(exc).__name__}: "
                         f"{exc})") from None
    if clips is not None and count != clips:
        raise ShardError(f"shard {url}: {count} samples, the index says {clips} (truncated or replaced)")
