"""Ingest batches: new files in the data folder arrive as a named batch, and each batch's videos can be read back.

A Dagster partition is one batch: the ``new_videos`` sensor lists files ingest has not registered
(:func:`unregistered_files`) and names them (:func:`batch_name`); every manifest keeps a batch's
rows in the batch's own folder (:meth:`vmas.manifest.Manifest.group`). Shared by ingest, the
sensor and the orchestration's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import pyarrow.compute as pc

from vmas.manifest import ID, ROOT_GROUP, Manifest, content_key

if TYPE_CHECKING:
    from vmas.config import Config


def scan_folder(root: Path, extensions: Iterable[str]) -> Iterator[Path]:
    """Video files under ``root``, recursively, in a stable order."""
    wanted = {f".{e.lower().lstrip('.')}" for e in extensions}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in wanted and not path.name.startswith("."):
            yield path


def video_id(row: dict) -> str:
    """The ingested video a row comes from (clip-level rows carry it; video-level rows are it)."""
    return row.get("video_id") or row[ID]


def unregistered_files(cfg: Config, manifest_root: Path) -> list[Path]:
    """Video files under ``paths.data_dir`` that ingest has not registered under their current path,
    size and time (what a sensor polls: no file is read, only listed). Files with the same bytes as a
    known video under another name stay listed: ingest counts them as duplicates."""
    known = set()
    for batch in Manifest(manifest_root).iter_batches(["path", "size_bytes", "mtime_ns"], batch_size=65536):
        batch = batch.filter(pc.is_valid(batch.column(0)))  # files, not URLs waiting for download
        known.update(zip(*(batch.column(i).to_pylist() for i in range(3))))
    found = []
    for path in scan_folder(Path(cfg.paths.data_dir), cfg.ingest.extensions):
        path = path.resolve()
        stat = path.stat()
        if (str(path), stat.st_size, stat.st_mtime_ns) not in known:
            found.append(path)
    return found


def batch_name(files: Iterable[Path]) -> str:
    """A batch named after the files it starts with, so that polling the same new files twice names
    the same batch (and registers nothing twice)."""
    return f"batch-{content_key(sorted(str(f) for f in files))[:12]}"


def batch_video_ids(manifest_root: Path, batch: str) -> set[str]:
    """Ids of the videos ingest registered in ``batch`` (a Dagster partition is one batch)."""
    ingest = Manifest(manifest_root)
    if ingest.group(batch).exists():
        return {row[ID] for row in ingest.group(batch).iter_rows([ID])}
    # a batch ingested before batches had folders
    return {row[ID] for row in ingest.group(ROOT_GROUP).iter_rows([ID, "batch"]) if row["batch"] == batch}


def batches(manifest_root: Path) -> list[str]:
    """Every batch name in the ingest manifest, sorted (one folder each; older ones are named in the rows)."""
    ingest = Manifest(manifest_root)
    names = {g for g in ingest.groups() if g != ROOT_GROUP}
    names |= {row["batch"] for row in ingest.group(ROOT_GROUP).iter_rows(["batch"])}
    return sorted(names)
