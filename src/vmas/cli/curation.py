"""Dataset commands: one per stage in ``STAGES``, named exactly as the stage (``filter_static``), plus
``ingest``, ``train_codec`` and ``curate`` (all of them in order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, resolve
from vmas.curation import STAGES

Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _row_stage_command(name: str):
    def command(workers: Workers = 1, limit: Annotated[Optional[int], typer.Option(
                    min=1, help="Process at most this many input rows (a quick look).")] = None,
                progress: Progress = True, config: ConfigFile = None, profile: Profile = None,
                set_: Overrides = None) -> None:
        from vmas.curation.runner import run_stage

        report = run_stage(name, resolve(config, profile, set_), workers=workers, progress=progress, limit=limit)
        typer.echo(json.dumps(report.as_dict(), indent=2))

    command.__doc__ = (f"{STAGES[name].description[:1].upper()}{STAGES[name].description[1:]}.\n\n"
                       f"Reads the {STAGES[name].upstream} manifest, skips rows already done with the same "
                       "inputs and parameters, records per-row errors, and writes the "
                       f"{name} manifest under <artifacts>/manifests/{name}/.")
    return command


def ingest_command(
    folders: Annotated[Optional[list[Path]], typer.Argument(help="Folders to scan recursively for videos.")] = None,
    manifest: Annotated[Optional[list[str]], typer.Option(
        "--manifest", "-m", help="CSV/Parquet listing paths or URIs (column path or uri); fsspec URIs work.")] = None,
    disco: Annotated[Optional[list[str]], typer.Option(
        help="DISCO-10M-style metadata Parquet; media is looked up under ingest.media_root.")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Name of this batch (default: a UTC timestamp).")] = None,
    progress: Progress = True,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Register raw videos by content hash (new files append; known ones are skipped).

    With no source given, scans paths.data_dir.
    """
    from vmas.curation.ingest import ingest
    from vmas.curation.runner import manifest_dir

    cfg = resolve(config, profile, set_)
    if not (folders or manifest or disco):
        folders = [Path(cfg.paths.data_dir)]
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), folders or [], manifest or [], disco or [], batch, progress)
    typer.echo(json.dumps(counts, indent=2))


def train_codec_command(progress: Progress = True, track: Annotated[bool, typer.Option(
                            help="Log the run to MLflow (tracking.uri; default a SQLite store in artifacts).")] = True,
                        config: ConfigFile = None, profile: Profile = None, set_: Overrides = None) -> None:
    """Train the demo EnCodec on the clip instrumentals and gate it on held-out clips.

    Does nothing when codec.pretrained is set, or when the same clips and settings were already
    trained on. A codec below codec.gate is kept as candidate.bin, not used, and the command fails.
    """
    cfg = resolve(config, profile, set_)
    report = _train_codec(cfg, progress, track)
    typer.echo(json.dumps({k: v for k, v in report.items() if k not in ("history", "clips")}, indent=2))


def _train_codec(cfg, progress: bool, track: bool) -> dict:
    from vmas.tracking.runs import mlflow_logger
    from vmas.codec.train_codec import train_codec

    logger = mlflow_logger(cfg, "train_codec", {"stage": "train_codec"}) if track and cfg.codec.pretrained is None \
        else None
    return train_codec(cfg, logger=logger, progress=progress)


def curate_command(workers: Workers = 1, progress: Progress = True, config: ConfigFile = None,
                   profile: Profile = None, set_: Overrides = None) -> None:
    """Build the training set: ingest paths.data_dir, run probe .. beats, then tokenize.

    Without codec.pretrained, train_codec runs before tokenize (a no-op when the demo codec is
    already trained on the same clips with the same settings).
    """
    from vmas.codec.train_codec import resolve_codec_path
    from vmas.curation.ingest import ingest
    from vmas.curation.runner import manifest_dir, run_stage

    cfg = resolve(config, profile, set_)
    ingest(cfg, manifest_dir(cfg, "ingest"), [Path(cfg.paths.data_dir)], progress=progress)
    for name, stage in STAGES.items():
        if name == "tokenize":
            report = _train_codec(cfg, progress, track=True)
            if "metrics" in report:
                m = report["metrics"]
                typer.echo(f"{'train_codec':14s} held-out SI-SNR {m['si_snr_db']:.2f} dB, mel distance "
                           f"{m['mel_distance_db']:.2f} dB, onset F {m['onset_f']:.3f}; codec {resolve_codec_path(cfg)}")
        if stage.process is not None:
            report = run_stage(name, cfg, workers=workers, progress=progress)
            typer.echo(f"{name:14s} {report.rows:5d} rows  {report.errors:4d} errors  "
                       f"{report.processed:4d} processed  {report.skipped:4d} skipped  {report.seconds:7.1f} s")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    for name, stage in STAGES.items():
        if stage.process is not None:
            app.command(name)(_row_stage_command(name))
    app.command("train_codec")(train_codec_command)
    app.command("curate")(curate_command)
