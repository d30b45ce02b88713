"""shard: pack the tokenized clips into WebDataset tar shards, train and validation apart.

For each ingest batch of the tokenize manifest, the usable clips (sorted by id) are split by source
video (:class:`vmas.data.split.HeldOut`, the split ``train`` uses with per-clip files) and packed in
order into shards of at most ``shard.max_bytes`` (format: :mod:`vmas.data.shards`): the training
video's bytes as they are, the codes, the beat weights and a JSON of ids and provenance. Shards go to
``shard.url`` (any writable fsspec URL; default ``<artifacts>/shard``), each written whole under a
temporary name and renamed (object stores: one PUT, which is atomic).

The stage's manifest has one row per shard (``<split>/<seq>`` in its batch's group) keyed by the
batch's clips, their keys and the settings: a rerun skips every shard already written with the same
key, so a killed run resumes after its last finished shard, and a changed clip (a new codec
re-tokenizes everything) re-shards its batch, under new file names (the key is in the name). Last,
``<url>/index.parquet`` lists every shard (all a reader needs) and replaces the old index in one
write; only then are files it does not list deleted (superseded shards, those of batches gone
upstream, a killed run's temporary files), so a reader of the old index is never left without data
while the stage runs.
"""

from __future__ import annotations

import bisect
import io
import logging
import posixpath
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vmas.config import Config
from vmas.data.shards import INDEX_FILE, INDEX_SCHEMA, SPLITS, encode_sample, join_url, tar_file_size, tar_size
from vmas.data.split import HeldOut
from vmas.errors import StageError
from vmas.io import atomic_path, file_sha256
from vmas.layout import manifest_dir, shard_url
from vmas.manifest import Manifest, content_key, schema_with
from vmas.stage import Stage

log = logging.getLogger(__name__)

NAME = "shard"
VERSION = 1
UPSTREAM = "tokenize"
COLUMNS = ["id", "key", "video_id", "video_path", "tokens_path", "codec_sha256", "error"]
SCHEMA = schema_with(
    pa.field("split", pa.string()),
    pa.field("path", pa.string()),  # relative to shard.url
    pa.field("clips", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("first_id", pa.string()),
    pa.field("last_id", pa.string()),
    pa.field("codec_sha256", pa.string()),
    pa.field("skipped", pa.int64()),  # clips of its range that could not be read (named in the log)
)


def _filesystem(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if set(_protocols(fs)) & {"http", "https"}:
        raise StageError(f"{NAME}: {url} is read-only (http); write shards to a local path or a bucket "
                         "and serve that folder")
    return fs, root


def _protocols(fs) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _is_local(fs) -> bool:
    return bool(set(_protocols(fs)) & {"file", "local"})


def _held_out(cfg: Config, tokens: Manifest) -> HeldOut | None:
    """The held-out videos over every usable clip (one streaming pass), or None: nothing held out."""
    if cfg.train.val_share <= 0:
        return None
    videos = (r["video_id"] for r in tokens.iter_rows(["video_id", "error"]) if r["error"] is None)
    try:
        return HeldOut.from_videos(videos, cfg.train.val_share, cfg.train.split_seed)
    except ValueError as exc:
        log.warning("%s: %s; every clip goes to the train shards", NAME, exc)
        return None


def _sample(clip: dict) -> dict[str, bytes]:
    with np.load(clip["tokens_path"]) as npz:
        codes, weights = npz["codes"], npz["beat_weights"]
    return encode_sample(clip["id"], clip["video_id"], clip["key"], clip["codec_sha256"],
                         Path(clip["video_path"]).read_bytes(), codes, weights)


def _write_shard(fs, url: str, clips: list[dict], start: int, max_bytes: int) -> tuple[dict, int]:
    """Pack ``clips[start:]`` into one shard at ``url`` until the next would pass ``max_bytes``;
    returns the shard's index fields and the position after its last clip."""
    from webdataset import TarWriter

    local = _is_local(fs)
    target = Path(url) if local else Path(tempfile.mkdtemp(prefix="vmas-shard-")) / "shard.tar"
    packed, skipped, size, i, first, last = 0, 0, 0, start, None, None  # size: the members' bytes
    with atomic_path(target) as tmp:
        # mtime an int: a float one makes tarfile add a PAX header to every member (1 kB each)
        with open(tmp, "wb") as f, TarWriter(f, encoder=False, mtime=0) as writer:
            while i < len(clips):
                try:
                    sample = _sample(clips[i])
                except (OSError, KeyError, ValueError) as exc:
                    log.warning("%s: clip %s cannot be read, left out: %s", NAME, clips[i]["id"], exc)
                    skipped, i = skipped + 1, i + 1
                    continue
                need = tar_size(sample)
                if packed and tar_file_size(size + need) > max_bytes:
                    break
                writer.write(sample)
                packed, size, i = packed + 1, size + need, i + 1
                first = first or clips[i - 1]["id"]
                last = clips[i - 1]["id"]
        sha256, nbytes = file_sha256(tmp), tmp.stat().st_size
    if not local:
        fs.put_file(str(target), url)  # one PUT: the object appears whole or not at all
        target.unlink()
        target.parent.rmdir()
    return {"clips": packed, "bytes": nbytes, "sha256": sha256, "first_id": first, "last_id": last,
            "skipped": skipped}, i


def _shard_batch(fs, root: str, group: str, clips: list[dict], held: HeldOut | None, out: Manifest,
                 settings: dict, progress) -> dict:
    """Shard one ingest batch's clips (sorted by id) into ``<split>/<batch>/shard-NNNNNN.tar``; returns counts."""
    done = {r["id"]: r for r in out.iter_rows()} if out.exists() else {}
    folder = group or "_"  # the tokenize manifest's ungrouped (older) parts
    keep, counts = [], {"written": 0, "kept": 0, "clips": 0, "skipped": 0}
    codec = {c["codec_sha256"] for c in clips}
    for split in SPLITS:
        mine = [c for c in clips if (held is not None and c["video_id"] in held) == (split == "val")]
        ids = [c["id"] for c in mine]
        key = content_key(NAME, VERSION, [(c["id"], c["key"]) for c in mine], settings)
        seq = i = 0
        while i < len(mine):
            # the key in the name: a re-sharded batch gets new files, and the old ones stay readable
            # under the old index until the new index replaces it
            sid, path = f"{split}/{seq:06d}", f"{split}/{folder}/shard-{seq:06d}-{key[:8]}.tar"
            url = join_url(root, path)
            before = done.get(sid)
            if before is not None and before["key"] == key and before["error"] is None and fs.exists(url):
                counts["kept"] += 1
                counts["clips"] += before["clips"]
                progress.update(bisect.bisect_right(ids, before["last_id"]) - i)
                i = bisect.bisect_right(ids, before["last_id"])
            else:
                fs.makedirs(posixpath.dirname(url), exist_ok=True)
                fields, end = _write_shard(fs, url, mine, i, settings["max_bytes"])
                progress.update(end - i)
                i = end
                if fields["clips"] == 0:  # the rest could not be read
                    counts["skipped"] += fields["skipped"]
                    if fs.exists(url):
                        fs.rm(url)
                    break
                out.append([{"id": sid, "input_id": sid, "key": key, "error": None, "split": split, "path": path,
                             "codec_sha256": ",".join(sorted(codec)), **fields}])
                counts["written"] += 1
                counts["clips"] += fields["clips"]
                counts["skipped"] += fields["skipped"]
            keep.append(sid)
            seq += 1
    out.compact(keep_inputs=keep)  # rows of shards a shrunk batch no longer has go; their files, in _sweep
    return counts


def _sweep(fs, root: str, index: Manifest) -> int:
    """Delete every file under ``<root>/{train,val}/`` that the index does not list (superseded shards,
    those of batches gone upstream, temporary files of a killed run); returns how many."""
    listed = {join_url(root, r["path"]) for r in index.iter_rows(["path"])}
    removed = 0
    for split in SPLITS:
        folder = join_url(root, split)
        if not fs.exists(folder):
            continue
        for path in fs.find(folder):
            if path not in listed:
                fs.rm(path)
                removed += 1
    return removed


def _write_index(fs, root: str, index: Manifest) -> int:
    """``<root>/index.parquet`` from the stage's manifest (one row per shard); returns the shard count."""
    rows = [{k: r[k] for k in INDEX_SCHEMA.names} for r in index.iter_rows() if r["error"] is None]
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["path"]), schema=INDEX_SCHEMA)
    if _is_local(fs):
        with atomic_path(Path(join_url(root, INDEX_FILE))) as tmp:
            pq.write_table(table, tmp)
    else:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        fs.pipe_file(join_url(root, INDEX_FILE), buffer.getvalue())
    return len(rows)


def shard(cfg: Config, progress: bool = True) -> dict:
    """Write (or bring up to date) every shard and the index; returns a report."""
    from tqdm.auto import tqdm

    tokens = Manifest(manifest_dir(cfg, UPSTREAM))
    if not tokens.exists():
        raise StageError(f"{NAME}: no {UPSTREAM} manifest in {tokens.root}; run `vmas tokenize` (or `vmas curate`)")
    fs, root = _filesystem(shard_url(cfg))
    fs.makedirs(root, exist_ok=True)
    held = _held_out(cfg, tokens)
    settings = {"max_bytes": cfg.shard.max_bytes, "val_share": cfg.train.val_share,
                "split_seed": cfg.train.split_seed}
    index = Manifest(manifest_dir(cfg, NAME), SCHEMA)
    groups = tokens.groups()
    totals = {"written": 0, "kept": 0, "clips": 0, "skipped": 0}  # and "removed", after the index
    with tqdm(desc=NAME, unit="clip", disable=not progress) as bar:
        for group in groups:
            clips = sorted((r for r in tokens.group(group).iter_rows(COLUMNS) if r["error"] is None),
                           key=lambda r: r["id"])
            bar.total = (bar.total or 0) + len(clips)
            counts = _shard_batch(fs, root, group, clips, held, index.group(group), settings, bar)
            totals = {k: totals[k] + counts[k] for k in totals}
    for gone in set(index.groups()) - set(groups):  # a batch no longer upstream: its shards go too
        index.drop_group(gone)
    shards = _write_index(fs, root, index)
    if not shards:
        raise StageError(f"{NAME}: no usable clip in {tokens.root} could be packed")
    totals["removed"] = _sweep(fs, root, index)
    report = {"stage": NAME, "url": shard_url(cfg), "shards": shards, **totals,
              "held_out_videos": held.held if held is not None else 0}
    log.info("%s: %d shards at %s (%d written, %d already done, %d old files removed), %d clips, %d left out",
             NAME, shards, report["url"], totals["written"], totals["kept"], totals["removed"], totals["clips"],
             totals["skipped"])
    return report


def _run(cfg: Config, *, progress: bool = True, batch: str | None = None, logger=None) -> dict:
    return shard(cfg, progress=progress)  # the split is over every batch's videos: no per-batch run


STAGE = Stage(
    name=NAME,
    title="training shards",
    upstream=UPSTREAM,
    schema=SCHEMA,
    run=_run,
    scope="dataset",  # which videos are held out depends on every batch
    description="pack the tokenized clips into WebDataset tar shards (train and validation apart) at shard.url",
)
