"""``vmas``: the command line. Every command has ``--help``; config errors exit with status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas import __version__
from vmas.cli.curation import register as register_curation
from vmas.cli.evaluation import register as register_evaluation
from vmas.cli.generation import register as register_generation
from vmas.cli.options import ConfigFile, Overrides, Profile, Progress, Workers, resolve
from vmas.cli.quality import register as register_quality
from vmas.cli.training import register as register_training
from vmas.config import ACTIVE_PARAMS_FILE, ConfigError, available_profiles, resolve_profile, use_profile
from vmas.errors import StageError
from vmas.logs import setup_logging

app = typer.Typer(
    name="vmas",
    help="Background music for any video, and the factory that trains the model that makes it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_curation(app)
register_training(app)
register_evaluation(app)
register_generation(app)
register_quality(app)
config_app = typer.Typer(help="Show, check and switch configuration profiles.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmas {__version__}")
        raise typer.Exit()


@app.callback()
def cli(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log one JSON object per line (for log shippers).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    setup_logging("DEBUG" if verbose else "WARNING" if quiet else "INFO", json_lines=log_json)


@app.command()
def synth(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the set (default: paths.data_dir).",
                                                file_okay=False)] = None,
    n: Annotated[Optional[int], typer.Option("--n", "-n", min=1, help="Number of videos (default: synth.n).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Random seed (default: synth.seed).")] = None,
    workers: Workers = 1,
    progress: Progress = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Generate the embedded synthetic music-video set (H.264 + AAC mp4s with stems and ground truth).

    Sight and sound are tied: scene cuts and motion peaks land on musical onsets, and each genre
    has its own visual style. Some videos are static or slideshows; some carry a vocal line.
    Re-running resumes: complete items are skipped.
    """
    from vmas.synth import synthesize_dataset

    cfg = resolve(config, profile, set_)
    synth_cfg = cfg.synth.model_copy(update={k: v for k, v in {"n": n, "seed": seed}.items() if v is not None})
    report = synthesize_dataset(synth_cfg, out or cfg.paths.data_dir, workers=workers, progress=progress)
    speed = (f"; {report.video_seconds:.0f} s of video in {report.wall_seconds:.1f} s "
             f"({report.realtime_factor:.1f}x real time)") if report.rendered else ""
    typer.echo(f"{report.out_dir}: {report.rendered} rendered, {report.skipped} already there{speed}")


@config_app.command("show")
def config_show(config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """Print the resolved configuration as YAML (after the profile and every --set)."""
    typer.echo(resolve(config, profile, set_).to_yaml(), nl=False)


@config_app.command("check")
def config_check(config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """Validate a configuration; exit 2 with every problem listed when it is not usable."""
    cfg = resolve(config, profile, set_)
    typer.echo(f"ok: profile {cfg.profile!r} is valid")


@config_app.command("use")
def config_use(
    name: Annotated[str, typer.Argument(help="Profile name (a file configs/NAME.yaml).")],
    target: Annotated[Path, typer.Option(help="Where the active profile lives.")] = Path(ACTIVE_PARAMS_FILE),
) -> None:
    """Make a profile the active one: write its complete, validated form to params.yaml (read by DVC)."""
    use_profile(name, target)
    typer.echo(f"{target}: now the {name!r} profile (from {resolve_profile(name)})")


@config_app.command("profiles")
def config_profiles() -> None:
    """List the named profiles that can be used with --profile."""
    for name in available_profiles():
        typer.echo(f"{name}\t{resolve_profile(name)}")


def main() -> None:
    """Console entry point: Typer reports usage errors; configuration errors exit 2 without a traceback."""
    try:
        app()
    except (ConfigError, StageError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
