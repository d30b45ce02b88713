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


def registered_files(manifest: Manifest) -> dict[tuple[str, int, int], str]:
    """``(path, size, mtime) -> id`` of every file row of an ingest manifest (or one batch's group): what
    ingest need not hash again, and what the sensor need not call new. URL rows (most, at DISCO
    scale) have no path and are left out, column-wise, before any row becomes a Python object."""
    files = {}
    for rows in manifest.iter_batches([ID, "path", "size_bytes", "mtime_ns"], batch_size=65536):
        rows = rows.filter(pc.is_valid(rows.column(1)))
        files.update({(p, size, mtime): vid for vid, p, size, mtime in zip(*(c.to_pylist() for c in rows.columns))})
    return files


def unregistered_files(cfg: Config, manifest_root: Path) -> list[Path]:
    """Video files under ``paths.data_dir`` that ingest has not registered under their current path,
    size and time (what a sensor polls: no file is read, only listed). Files with the same bytes as a
    known video under another name stay listed: ingest counts them as duplicates."""
    known = registered_files(Manifest(manifest_root))
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
