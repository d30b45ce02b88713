"""``vmas check STAGE``: validate a stage's output with its Great Expectations suite."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, resolve


def check_command(
    stage: Annotated[str, typer.Argument(help="ingest, probe, filter_static, remove_vocals, clip, beats, tokenize "
                                              "or evaluate.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Check a stage's output (its manifest's usable rows, or evaluate's metrics); exit 1 when an expectation fails."""
    from dataclasses import asdict

    from vmas.quality.suites import check_stage

    outcome = check_stage(stage, resolve(config, profile, set_))
    if as_json:
        typer.echo(json.dumps({"stage": outcome.stage, "rows": outcome.rows, "success": outcome.success,
                               "expectations": [asdict(e) for e in outcome.expectations]}, indent=2, default=str))
    else:
        for e in outcome.expectations:
            detail = "" if e.success else (f"  ERROR {e.error}" if e.error else
                                           f"  {e.unexpected_count} of {e.element_count} rows, e.g. {e.examples[:3]}")
            typer.echo(f"{'ok  ' if e.success else 'FAIL'} {e.name}{detail}")
        typer.echo(f"{stage}: {outcome.rows} rows, {'passed' if outcome.success else 'FAILED'}")
    if not outcome.success:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
