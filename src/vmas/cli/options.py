"""Options shared by every command that reads the configuration."""

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


def resolve(config: Optional[Path], profile: Optional[str], overrides: Optional[list[str]]) -> Config:
    return load_config(config, profile, overrides or ())
