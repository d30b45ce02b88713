"""How assets describe what they made in Dagster's UI: numbers, links, inline plots and the run's tags."""

import base64
from pathlib import Path

import dagster as dg


def image(path: Path) -> dg.MetadataValue:
    """A PNG shown inline in the asset's metadata (Dagster renders Markdown images from data URIs)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{path.name}](data:image/png;base64,{data})")


def link(metadata: dict, key: str, url: str | None) -> None:
    if url:
        metadata[key] = dg.MetadataValue.url(url)


def floats(values: dict, prefix: str = "") -> dict:
    return {f"{prefix}{k}": dg.MetadataValue.float(float(v)) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    return {"dagster_run_id": context.run.run_id, "orchestrator": "dagster"}
