"""Manifests: the Parquet tables every stage reads and writes.

A manifest is a folder of Parquet *parts*, each written atomically by one chunk of work, so a stage
killed midway keeps every finished chunk and a re-run skips it. Every row carries:

- ``id``       the row's identity (a video's content hash, or ``<video id>/<clip index>``)
- ``input_id`` the upstream row it was made from (``id`` itself for ingest)
- ``key``      a hash of that input and the stage's parameters: same key, same result, no work
- ``error``    why the row failed, or null

**Partitioned by ingest batch.** Parts live in one sub-folder per ingest batch
(``manifests/probe/<batch>/part-000003-1f0c9a2e.parquet``): the batch's rows, in every stage, are
written only by the run that processes that batch (a Dagster partition run, on whichever machine),
and readers see the union of the folders. So many machines can write one manifest at once on a
shared volume with no lock: nobody renames, numbers or compacts another batch's parts, and a part's
name carries a random token, so two writers never pick the same name even inside one batch. Parts
written before batches had folders (directly in the manifest folder) read as one more group.

A newer part supersedes an older one per ``input_id`` within its batch (one input may give several
rows, as clips do), and :meth:`Manifest.compact` folds a batch's parts into one once a stage
finishes it. Reading streams record batches; memory is bounded by the largest batch, never by the
number of batches.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vmas.errors import ManifestError
from vmas.io import atomic_path

ID, INPUT_ID, KEY, ERROR = "id", "input_id", "key", "error"
BASE_FIELDS = [pa.field(ID, pa.string()), pa.field(INPUT_ID, pa.string()), pa.field(KEY, pa.string()),
               pa.field(ERROR, pa.string())]
_PART = re.compile(r"^part-(\d{6})(?:-[0-9a-f]{8})?\.parquet$")


def schema_with(*fields: pa.Field) -> pa.Schema:
    """A stage's schema: the four base columns, then its own."""
    return pa.schema([*BASE_FIELDS, *fields])


def content_key(*parts: Any) -> str:
    """A stable short hash of JSON-able values (inputs and parameters)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


ROOT_GROUP = ""  # the parts directly in the manifest folder (written before batches had folders)


def _stored_type(kind: pa.DataType) -> pa.DataType:
    """How a column is kept in a part: fixed-size lists as plain lists (pyarrow 25 cannot read a
    fixed-size list column with nulls back from Parquet; Parquet has no fixed-size list anyway)."""
    return pa.list_(kind.value_type) if pa.types.is_fixed_size_list(kind) else kind


def _stored_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(_stored_type(f.type)) for f in schema], metadata=schema.metadata)


def _stored(table: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    stored = _stored_schema(table.schema)
    return table if stored == table.schema else table.cast(stored)


def _part_order(path: Path) -> tuple[int, str]:
    return int(_PART.match(path.name).group(1)), path.name


class Manifest:
    """A stage's manifest folder: the union of its batch groups (see the module docstring).

    ``Manifest(root).group(batch)`` is one batch's part folder, read and written the same way; reading
    the whole manifest reads each group in turn. ``append`` and ``compact`` work on one group: on the
    whole manifest they touch only the parts directly in its folder.
    """

    def __init__(self, root: str | Path, schema: pa.Schema | None = None, _grouped: bool = True,
                 _top: Path | None = None):
        self.root = Path(root)
        self.schema = schema
        self._grouped = _grouped  # False: one group's folder (its sub-folders are not groups)
        self._top = self.root if _top is None else _top  # the whole manifest's folder (a group's parent)

    def __repr__(self) -> str:
        return f"Manifest({str(self.root)!r})"

    @property
    def stage(self) -> str:
        """The stage whose manifest this is (its folder's name; a group's parent folder's)."""
        return self._top.name

    def groups(self) -> list[str]:
        """The batch groups holding parts, sorted (``ROOT_GROUP`` first when the folder has parts itself)."""
        if not self.root.is_dir():
            return []
        names = []
        if self._grouped:
            names = sorted(d.name for d in self.root.iterdir()
                           if d.is_dir() and not d.name.startswith(".") and any(_PART.match(p.name) for p in d.iterdir()))
        return ([ROOT_GROUP] if self.parts() else []) + names

    def group(self, name: str) -> "Manifest":
        """One batch's part folder (``ROOT_GROUP``: the parts directly in this folder)."""
        if name == ROOT_GROUP:
            return Manifest(self.root, self.schema, _grouped=False, _top=self._top)
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a usable batch name (a folder name: no '/', not starting with '.')")
        return Manifest(self.root / name, self.schema, _grouped=False, _top=self._top)

    def _groups(self) -> list["Manifest"]:
        return [self.group(g) for g in self.groups()] if self._grouped else [self]

    def parts(self) -> list[Path]:
        """This folder's own part files, oldest first (a group's; on the whole manifest, the ungrouped ones)."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if _PART.match(p.name)), key=_part_order)

    def exists(self) -> bool:
        return bool(self.groups()) if self._grouped else bool(self.parts())

    def append(self, rows: list[dict] | pa.Table) -> Path | None:
        """Write ``rows`` (dicts, or a table of this schema) as a new part of this group (atomically).
        Returns its path, or None for no rows.

        The name is the next sequence number plus a random token, so a writer racing another on the
        same group never replaces its part."""
        if not len(rows):
            return None
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=self.schema)
        target = self._next_part()
        with atomic_path(target) as tmp:
            pq.write_table(_stored(table), tmp)
        return target

    def _next_part(self) -> Path:
        parts = self.parts()
        seq = _part_order(parts[-1])[0] + 1 if parts else 0
        return self.root / f"part-{seq:06d}-{uuid.uuid4().hex[:8]}.parquet"

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
        """Current rows in record batches, group by group (in a group, newest part first; superseded
        inputs left out). Memory: one record batch and the input ids of one group."""
        for group in self._groups():
            yield from group._iter_own(columns, batch_size)

    def _iter_own(self, columns: list[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        seen: set[str] = set()
        read_cols = None if columns is None else list(dict.fromkeys([INPUT_ID, *columns]))
        for part in reversed(self.parts()):
            in_part: set[str] = set()
            for batch in self._read_part(part, read_cols, batch_size):
                inputs = batch.column(INPUT_ID).to_pylist()
                mask = [i not in seen for i in inputs]
                in_part.update(inputs)
                if not all(mask):
                    batch = batch.filter(pa.array(mask))
                if batch.num_rows:
                    batch = self._conform(self._add_missing(batch, read_cols))
                    yield batch if columns is None else batch.select(columns)
            seen |= in_part

    def _read_part(self, part: Path, columns: list[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The record batches of one part file (those of ``columns`` it has, or all).

        A part that is empty, truncated or otherwise corrupt (a copy cut short, a disk that filled,
        a crash before the data reached the disk) raises :class:`ManifestError`: one line naming
        the part and the stage, and the fix."""
        try:
            batches = pq.ParquetFile(part).iter_batches(batch_size=batch_size, columns=columns)
            while (batch := next(batches, None)) is not None:
                yield batch
        except (pa.ArrowException, OSError) as exc:
            self._raise_unreadable(part, exc)
            raise

    def _raise_unreadable(self, part: Path, exc: Exception) -> None:
        """Raise ``exc`` as a :class:`ManifestError`, unless the file is gone or not ours to read
        (deleting it is no fix then, and the original error says more: the caller re-raises it)."""
        if getattr(exc, "errno", None) not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR):
            raise ManifestError(str(part), self.stage, str(exc)) from exc

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

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Columns kept as another type on disk (see :func:`_stored_type`) back to the schema's type."""
        fixed = {} if self.schema is None else {f.name: f for f in self.schema if pa.types.is_fixed_size_list(f.type)}
        wanted = pa.schema([fixed.get(f.name, f) for f in batch.schema])
        return batch if wanted == batch.schema else batch.cast(wanted)

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

    def done_keys(self, redo: Callable[[str], bool] | None = None) -> dict[str, str]:
        """``input_id -> key`` of every input already processed, leaving out inputs whose row failed
        with an error that ``redo(error)`` says is worth another try."""
        columns = [INPUT_ID, KEY] if redo is None else [INPUT_ID, KEY, ERROR]
        return {row[INPUT_ID]: row[KEY] for row in self.iter_rows(columns)
                if redo is None or not row[ERROR] or not redo(row[ERROR])}

    def compact(self, keep_inputs: Iterable[str] | None = None) -> None:
        """Fold this group's parts into one; with ``keep_inputs``, drop rows of inputs no longer upstream.

        On the whole manifest it folds only the parts directly in its folder (each batch's run
        compacts its own group: see the module docstring)."""
        parts = self.parts()
        keep = None if keep_inputs is None else set(keep_inputs)
        if not parts or (len(parts) == 1 and keep is None):
            return
        target = self._next_part()
        try:
            schema = pq.read_schema(parts[-1]) if self.schema is None else _stored_schema(self.schema)
        except (pa.ArrowException, OSError) as exc:
            self._raise_unreadable(parts[-1], exc)
            raise
        with atomic_path(target) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in self._iter_own(None, 1024):
                    if keep is not None:
                        batch = batch.filter(pa.array([i in keep for i in batch.column(INPUT_ID).to_pylist()]))
                    if batch.num_rows:
                        writer.write_batch(_stored(batch))
        for part in parts:  # the new part already holds everything: old ones can go
            part.unlink(missing_ok=True)

    def drop_group(self, name: str) -> None:
        """Delete one batch's parts (its batch is gone upstream)."""
        group = self.group(name)
        for part in group.parts():
            part.unlink(missing_ok=True)
        if name != ROOT_GROUP and group.root.is_dir() and not any(group.root.iterdir()):
            group.root.rmdir()
