"""Options shared by the commands: the configuration (file, profile, --set), progress bars, MLflow tracking, workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas.config import Config, load_config

ConfigFile = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Config file to use (default: ./params.yaml, the active profile).",
                 dir_okay=False),
]
Profile = Annotated[
    Optional[str], typer.Option("--profile", "-p", help="Use a named profile from configs/ (demo, paper, ...).")
]
Overrides = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one key, e.g. --set synth.n=4 (repeatable; values are YAML).",
                 metavar="KEY.PATH=VALUE"),
]

Progress = Annotated[bool, typer.Option(help="Show progress bars.")]
Track = Annotated[bool, typer.Option(help="Log the run to MLflow (tracking.uri; default a SQLite store in artifacts).")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]


def resolve(config: Optional[Path], profile: Optional[str], overrides: Optional[list[str]]) -> Config:
    return load_config(config, profile, overrides or ())
