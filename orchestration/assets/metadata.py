"""How assets describe what they made in Dagster's UI: numbers, links, inline curves, table metadata and the
run's tags.

Dagster's UI shows a Markdown value in the metadata table itself only when it is shorter than
:data:`INLINE_MARKDOWN` characters; a longer one (a whole matplotlib figure as a data URI, a Markdown
table) hides behind a "[Show Markdown]" link. So a curve is a sparkline: a small 2-bit PNG drawn here from
the report's numbers (no plotting library), well under the limit; the full figures stay on disk (a
path) and in the MLflow run. Tables are :class:`dagster.TableMetadataValue`, which the UI always shows
inline. Manifests report Dagster's standard table metadata (``dagster/row_count``,
``dagster/partition_row_count``, ``dagster/column_schema``), which the asset page shows as its row
count and its Columns tab.
"""

import base64
import math
import struct
import zlib
from pathlib import Path

import dagster as dg
import pyarrow as pa

INLINE_MARKDOWN = 1000  # Dagster 1.13's UI (MetadataEntry.tsx): Markdown of this many characters or more is a link

# Sparkline colours (RGBA): transparent background (light and dark UI themes), a pale band for the spread of
# the values drawn in one pixel column, a blue line through their mean.
_PALETTE = [(255, 255, 255, 0), (66, 133, 244, 80), (30, 90, 200, 255), (0, 0, 0, 255)]
_BAND, _LINE = 1, 2

# What the four columns every manifest starts with mean (vmas.manifest), for the column schema.
_BASE_COLUMNS = {"id": "the row's identity (a video's content hash, or <video id>/<clip index>)",
                 "input_id": "the upstream row it was made from (its own id for ingest)",
                 "key": "a hash of the input and the stage's parameters: same key, same result, no work",
                 "error": "why the row failed; null: usable"}


def link(metadata: dict, key: str, url: str | None) -> None:
    if url:
        metadata[key] = dg.MetadataValue.url(url)


def floats(values: dict, prefix: str = "") -> dict:
    return {f"{prefix}{k}": dg.MetadataValue.float(float(v)) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    return {"dagster_run_id": context.run.run_id, "orchestrator": "dagster"}


def figure(path: Path) -> dg.MetadataValue | None:
    """A figure the library wrote (a full-size PNG), as its path; None when there is none. Too large to
    show inline (see the module docstring): the curves are sparklines, the figure is on disk and in MLflow."""
    return dg.MetadataValue.path(str(path.resolve())) if path.is_file() else None


def png_markdown(png: bytes, alt: str, caption: str = "") -> dg.MetadataValue:
    """``png`` as a Markdown image with a ``data:`` URI (Dagster renders those), the caption beneath.

    Raises ValueError when the Markdown would be too long to show inline."""
    text = f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})" + (f"\n\n{caption}" if caption else "")
    if len(text) >= INLINE_MARKDOWN:
        raise ValueError(f"{alt}: {len(text)} characters of Markdown; Dagster shows under {INLINE_MARKDOWN} inline")
    return dg.MetadataValue.md(text)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def indexed_png(pixels: list[bytearray]) -> bytes:
    """A PNG of palette indices ``pixels[y][x]`` in 0..3 (:data:`_PALETTE`), 2 bits a pixel, deflated."""
    height, width = len(pixels), len(pixels[0])
    raw = bytearray()
    for row in pixels:
        raw.append(0)  # PNG filter type 0: the row as it is
        for x in range(0, width, 4):
            byte = 0
            for i, index in enumerate(row[x:x + 4]):
                byte |= index << (6 - 2 * i)
            raw.append(byte)
    header = struct.pack(">IIBBBBB", width, height, 2, 3, 0, 0, 0)  # 2-bit depth, colour type 3: indexed
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"PLTE", bytes(c for rgba in _PALETTE for c in rgba[:3]))
            + _chunk(b"tRNS", bytes(rgba[3] for rgba in _PALETTE))
            + _chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _chunk(b"IEND", b""))


def sparkline(steps: list[float], values: list[float], width: int = 240, height: int = 48) -> bytes:
    """A ``width`` x ``height`` PNG of ``values`` over ``steps``: x from the first step to the last, y from
    the smallest value (bottom) to the largest (top). Where several values share a pixel column, a pale
    band spans them and the line goes through their mean. Non-finite values are left out."""
    points = [(float(s), float(v)) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
    if not points:
        raise ValueError("no finite value to draw")
    first, last = min(s for s, _ in points), max(s for s, _ in points)
    low, high = min(v for _, v in points), max(v for _, v in points)

    def column(step: float) -> int:
        return 0 if last == first else round((step - first) / (last - first) * (width - 1))

    def row(value: float) -> int:
        return (height - 1) // 2 if high == low else round((high - value) / (high - low) * (height - 1))

    by_column: dict[int, list[float]] = {}
    for s, v in points:
        by_column.setdefault(column(s), []).append(v)
    pixels = [bytearray(width) for _ in range(height)]
    for x, vs in by_column.items():
        for y in range(row(max(vs)), row(min(vs)) + 1):
            pixels[y][x] = _BAND
    means = sorted((x, row(sum(vs) / len(vs))) for x, vs in by_column.items())
    x0, y0 = means[0]
    pixels[y0][x0] = _LINE
    for x1, y1 in means[1:]:  # straight between neighbouring means, every pixel column filled
        previous = y0
        for x in range(x0 + 1, x1 + 1):
            y = round(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
            for yy in range(min(previous, y), max(previous, y) + 1):
                pixels[yy][x] = _LINE
            previous = y
        x0, y0 = x1, y1
    return indexed_png(pixels)


def curve(history: list[dict], key: str, width: int = 240, height: int = 48) -> dg.MetadataValue | None:
    """``key``'s values over the ``step`` of the ``history`` rows that have it, as an inline sparkline with
    a caption (first, last, smallest value; the steps); None when no row has a finite value."""
    rows = [r for r in history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not rows:
        return None
    steps, values = [r["step"] for r in rows], [float(r[key]) for r in rows]
    caption = (f"{values[0]:.4g} → {values[-1]:.4g} (min {min(values):.4g}), steps {min(steps)}–{max(steps)}, "
               f"{len(values)} value{'s' if len(values) > 1 else ''}")
    while True:  # a very jagged curve compresses worse: narrower until it shows inline
        try:
            return png_markdown(sparkline(steps, values, width, height), key, caption)
        except ValueError:
            if width <= 60:
                raise
            width = width * 3 // 4


def curves(history: list[dict], keys: list[str]) -> dict[str, dg.MetadataValue]:
    """``"<key> curve"``: a sparkline (:func:`curve`) for each of ``keys`` that ``history`` has."""
    drawn = {f"{key} curve": curve(history, key) for key in keys}
    return {k: v for k, v in drawn.items() if v is not None}


def column_type(kind: pa.DataType) -> str:
    """A readable name for an Arrow type: ``string``, ``int32``, ``float64``, ``bool``, ``list<float32>``,
    ``float32[512]`` (a fixed-size list)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_floating(kind):
        return f"float{kind.bit_width}"
    if pa.types.is_integer(kind):
        return str(kind)  # int32, uint8 ...
    if pa.types.is_fixed_size_list(kind):
        return f"{column_type(kind.value_type)}[{kind.list_size}]"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"list<{column_type(kind.value_type)}>"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    return str(kind)


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A manifest's Arrow schema as Dagster's column schema (the asset page's Columns tab)."""
    return dg.TableSchema(columns=[
        dg.TableColumn(f.name, column_type(f.type), description=_BASE_COLUMNS.get(f.name),
                       constraints=dg.TableColumnConstraints(nullable=f.nullable)) for f in schema])


def manifest_rows(root: Path) -> int:
    """The current rows of the manifest at ``root``, every batch's (superseded rows left out)."""
    from vmas.manifest import Manifest

    return sum(b.num_rows for b in Manifest(root).iter_batches(["id"]))


def table_metadata(schema: pa.Schema, rows: int, partition_rows: int | None = None) -> dict[str, dg.MetadataValue]:
    """Dagster's standard table metadata of a manifest: ``dagster/row_count`` (every batch's rows),
    ``dagster/partition_row_count`` (this batch's, for a partitioned asset) and ``dagster/column_schema``."""
    metadata = {"dagster/row_count": dg.MetadataValue.int(rows),
                "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(schema))}
    if partition_rows is not None:
        metadata["dagster/partition_row_count"] = dg.MetadataValue.int(partition_rows)
    return metadata
