"""Dataset commands: one per stage in ``STAGES``, named exactly as the stage (``filter_static``), plus
``curate`` (all of them in order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, Progress, Track, Workers, resolve
from vmas.curation import STAGES
from vmas.curation.ingest import ingest
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir


def _row_stage_command(name: str):
    def command(workers: Workers = 1, limit: Annotated[Optional[int], typer.Option(
                    min=1, help="Process at most this many input rows (a quick look).")] = None,
                batch: Annotated[Optional[str], typer.Option(
                    help="Only this ingest batch (what one Dagster partition runs).")] = None,
                retry_failed: Annotated[bool, typer.Option(
                    "--retry-failed", help="Try rows that failed before again, whatever the reason.")] = False,
                progress: Progress = True, config: ConfigFile = None, profile: Profile = None,
                set_: Overrides = None) -> None:
        report = run_stage(name, resolve(config, profile, set_), workers=workers, progress=progress, limit=limit,
                           batch=batch, retry_failed=retry_failed)
        typer.echo(json.dumps(report.as_dict(), indent=2))

    command.__doc__ = (f"{STAGES[name].description[:1].upper()}{STAGES[name].description[1:]}.\n\n"
                       f"Reads the {STAGES[name].upstream} manifest, skips rows already done with the same "
                       "inputs and parameters, records per-row errors, and writes the "
                       f"{name} manifest under <artifacts>/manifests/{name}/.")
    return command


def ingest_command(
    folders: Annotated[Optional[list[Path]], typer.Argument(help="Folders to scan recursively for videos.")] = None,
    manifest: Annotated[Optional[list[str]], typer.Option(
        "--manifest", "-m", help="CSV/Parquet listing paths or URIs (column path or uri): a file, a folder or a "
                                 "glob, local or any fsspec URL; remote URIs are fetched by `vmas download`.")] = None,
    disco: Annotated[Optional[list[str]], typer.Option(
        help="DISCO-10M (or LAION-DISCO-12M) metadata Parquet: a file, a folder of shards or a glob, local or any "
             "fsspec URL; streamed, every ingest.batch_rows rows one batch; `vmas download` fetches the videos.")] = None,
    batch: Annotated[Optional[str], typer.Option(
        help="Name of a folder scan's batch (default: a UTC timestamp); tables name theirs by file and row.")] = None,
    progress: Progress = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Register raw videos: files by content hash, metadata rows by URL (known ones are skipped).

    With no source given, scans paths.data_dir. Prints the counts and the batches written.
    """
    cfg = resolve(config, profile, set_)
    if not (folders or manifest or disco):
        folders = [Path(cfg.paths.data_dir)]
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), folders or [], manifest or [], disco or [], batch, progress)
    typer.echo(json.dumps(counts, indent=2))


def _whole_stage_command(name: str):
    def command(progress: Progress = True, track: Track = True, config: ConfigFile = None, profile: Profile = None,
                set_: Overrides = None) -> None:
        report = run_whole_stage(name, resolve(config, profile, set_), progress=progress, track=track)
        typer.echo(json.dumps({k: v for k, v in report.items() if k not in ("history", "clips")}, indent=2))

    stage = STAGES[name]
    command.__doc__ = (f"{stage.description[:1].upper()}{stage.description[1:]}.\n\n"
                       f"Reads every {stage.upstream} row at once; does nothing when its inputs and settings are "
                       "unchanged since the last run.")
    return command


def run_whole_stage(name: str, cfg, progress: bool = True, track: bool = True, batch: str | None = None) -> dict:
    """Run a whole (not row-by-row) stage, with an MLflow run when it is ``tracked`` and ``track`` is on."""
    from vmas.tracking.runs import mlflow_logger

    stage = STAGES[name]
    logger = mlflow_logger(cfg, name, {"stage": name}) if track and stage.tracked(cfg) else None
    return stage.run(cfg, progress=progress, batch=batch, logger=logger)


def headline(name: str, report: dict) -> str:
    """One line on what a whole stage did, for ``vmas curate``."""
    if "metrics" in report:  # a trained codec
        m = report["metrics"]
        return (f"held-out SI-SNR {m['si_snr_db']:.2f} dB, mel distance {m['mel_distance_db']:.2f} dB, "
                f"onset F {m['onset_f']:.3f}")
    return ", ".join(f"{k} {v}" for k, v in report.items() if isinstance(v, (int, float, str)) and v is not None)


def curate_command(workers: Workers = 1, progress: Progress = True, config: ConfigFile = None,
                   profile: Profile = None, set_: Overrides = None) -> None:
    """Build the training set: every stage in order, ingest (of paths.data_dir) to tokenize.

    Without codec.pretrained, train_codec trains the demo codec before tokenize (a no-op when it is
    already trained on the same clips with the same settings).
    """
    cfg = resolve(config, profile, set_)
    for name, stage in STAGES.items():
        if stage.row_wise:
            report = run_stage(name, cfg, workers=workers, progress=progress)
            typer.echo(f"{name:14s} {report.rows:5d} rows  {report.errors:4d} errors  "
                       f"{report.processed:4d} processed  {report.skipped:4d} skipped  {report.seconds:7.1f} s")
        else:
            typer.echo(f"{name:14s} {headline(name, run_whole_stage(name, cfg, progress=progress))}")


def register(app: typer.Typer) -> None:
    """One command per stage, in pipeline order (named exactly as the stage), then ``curate``."""
    for name, stage in STAGES.items():
        command = COMMANDS.get(name) or (_row_stage_command(name) if stage.row_wise else _whole_stage_command(name))
        app.command(name)(command)
    app.command("curate")(curate_command)


COMMANDS = {"ingest": ingest_command}  # stages whose command takes more than the common options
