"""What a run records beyond metrics, through whatever Lightning logger the caller passed.

The library never imports a tracking system: it hands files, tags and parameters to the logger
when the logger keeps them (Lightning's ``MLFlowLogger`` exposes its client as ``experiment`` and
its run as ``run_id``), and does nothing otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


def _client(logger) -> tuple[Any, str | None]:
    return getattr(logger, "experiment", None), getattr(logger, "run_id", None)


def log_artifacts(logger, paths: Iterable[str | Path], folder: str) -> None:
    """Attach files to the run (under ``folder``) when the logger keeps artifacts."""
    client, run_id = _client(logger)
    if client is None or run_id is None or not hasattr(client, "log_artifact"):
        return
    for path in paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=folder)


def set_tags(logger, tags: dict[str, Any]) -> None:
    """Tag the run (e.g. the DVC data version) when the logger has tags."""
    client, run_id = _client(logger)
    if client is None or run_id is None or not hasattr(client, "set_tag"):
        return
    for key, value in tags.items():
        if value is not None:
            client.set_tag(run_id, key, str(value))


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: a nested config as flat run parameters."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def dvc_data_version(dvc_file: str | Path = "data.dvc") -> str | None:
    """The md5 DVC recorded for the tracked data (``outs[0].md5`` of ``data.dvc``), or None."""
    import yaml

    path = Path(dvc_file)
    if not path.is_file():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")
