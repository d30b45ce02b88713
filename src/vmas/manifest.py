"""Manifests: the Parquet tables every stage reads and writes.

A manifest is a folder of Parquet *parts* (``part-000000.parquet``, ...), each written atomically
by one chunk of work, so a stage killed midway keeps every finished chunk and a re-run skips it.
Every row carries:

- ``id``       the row's identity (a video's content hash, or ``<video id>/<clip index>``)
- ``input_id`` the upstream row it was made from (``id`` itself for ingest)
- ``key``      a hash of that input and the stage's parameters: same key, same result, no work
- ``error``    why the row failed, or null

A newer part supersedes an older one per ``input_id`` (one input may give several rows, as clips
do), and :meth:`Manifest.compact` folds the parts into one once a stage finishes. Reading streams
record batches, so memory stays bounded by the batch, not the dataset, apart from a set of ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vmas.io import atomic_path

ID, INPUT_ID, KEY, ERROR = "id", "input_id", "key", "error"
BASE_FIELDS = [pa.field(ID, pa.string()), pa.field(INPUT_ID, pa.string()), pa.field(KEY, pa.string()),
               pa.field(ERROR, pa.string())]
_PART = re.compile(r"part-(\d{6})\.parquet$")


def schema_with(*fields: pa.Field) -> pa.Schema:
    """A stage's schema: the four base columns, then its own."""
    return pa.schema([*BASE_FIELDS, *fields])


def content_key(*parts: Any) -> str:
    """A stable short hash of JSON-able values (inputs and parameters)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class Manifest:
    """A stage's manifest folder."""

    def __init__(self, root: str | Path, schema: pa.Schema | None = None):
        self.root = Path(root)
        self.schema = schema

    def __repr__(self) -> str:
        return f"Manifest({str(self.root)!r})"

    def parts(self) -> list[Path]:
        """Part files, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if _PART.match(p.name)), key=lambda p: p.name)

    def exists(self) -> bool:
        return bool(self.parts())

    def lock(self, timeout_s: float = -1):
        """An exclusive lock on writing this manifest (two Dagster runs of different batches, or DVC
        and Dagster at once, would otherwise number parts and compact the same folder together).
        The lock file lives beside the folder, so the folder holds only data."""
        from filelock import FileLock

        locks = self.root.parent / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(locks / f"{self.root.name}.lock", timeout=timeout_s)

    def append(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` as a new part (atomically). Returns its path, or None for no rows."""
        if not rows:
            return None
        parts = self.parts()
        seq = int(_PART.match(parts[-1].name).group(1)) + 1 if parts else 0
        table = pa.Table.from_pylist(rows, schema=self.schema)
        target = self.root / f"part-{seq:06d}.parquet"
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
        return target

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
        """Current rows in record batches (newest part first; superseded inputs left out)."""
        seen: set[str] = set()
        read_cols = None if columns is None else list(dict.fromkeys([INPUT_ID, *columns]))
        for part in reversed(self.parts()):
            in_part: set[str] = set()
            for batch in pq.ParquetFile(part).iter_batches(batch_size=batch_size, columns=read_cols):
                inputs = batch.column(INPUT_ID).to_pylist()
                mask = [i not in seen for i in inputs]
                in_part.update(inputs)
                if not all(mask):
                    batch = batch.filter(pa.array(mask))
                if batch.num_rows:
                    batch = self._add_missing(batch, read_cols)
                    yield batch if columns is None else batch.select(columns)
            seen |= in_part

    def _add_missing(self, batch: pa.RecordBatch, wanted: list[str] | None) -> pa.RecordBatch:
        """``batch`` with the columns of the schema (those ``wanted``, or all) that its part predates, as
        nulls: a part written before a stage gained a column reads like a newer one, so ``read`` and
        ``compact`` still work on a manifest kept from before."""
        if self.schema is None:
            return batch
        wanted = self.schema.names if wanted is None else wanted
        missing = [self.schema.field(n) for n in wanted if n in self.schema.names and n not in batch.schema.names]
        if not missing:
            return batch
        for f in missing:
            batch = batch.append_column(f, pa.nulls(batch.num_rows, f.type))
        order = [n for n in self.schema.names if n in batch.schema.names]
        return batch.select(order + [n for n in batch.schema.names if n not in order])

    def iter_rows(self, columns: list[str] | None = None) -> Iterator[dict]:
        for batch in self.iter_batches(columns):
            yield from batch.to_pylist()

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """All current rows as one table (for small manifests, reports and tests)."""
        batches = list(self.iter_batches(columns))
        if batches:
            return pa.Table.from_batches(batches)
        schema = self.schema if self.schema is not None else pa.schema([])
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)

    def done_keys(self) -> dict[str, str]:
        """``input_id -> key`` of every input already processed."""
        return {row[INPUT_ID]: row[KEY] for row in self.iter_rows([INPUT_ID, KEY])}

    def compact(self, keep_inputs: Iterable[str] | None = None) -> None:
        """Fold all parts into one; with ``keep_inputs``, drop rows of inputs no longer upstream."""
        parts = self.parts()
        keep = None if keep_inputs is None else set(keep_inputs)
        if not parts or (len(parts) == 1 and keep is None):
            return
        seq = int(_PART.match(parts[-1].name).group(1)) + 1
        target = self.root / f"part-{seq:06d}.parquet"
        schema = self.schema or pq.read_schema(parts[-1])
        with atomic_path(target) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in self.iter_batches():
                    if keep is not None:
                        batch = batch.filter(pa.array([i in keep for i in batch.column(INPUT_ID).to_pylist()]))
                    if batch.num_rows:
                        writer.write_batch(batch)
        for part in parts:  # the new part already holds everything: old ones can go
            part.unlink()
