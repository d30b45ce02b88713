"""``vmas train``: fit VMAs on the training set; runs under torchrun or a cluster launcher as is."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from vmas.cli.options import ConfigFile, Overrides, Profile, Progress, Track, resolve


def train_command(
    resume: Annotated[bool, typer.Option(help="Resume from <artifacts>/train/checkpoints/last.ckpt when present.")] = True,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many steps (default: train.max_steps).")] = None,
    progress: Progress = True,
    track: Track = True,
    tag: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE tag on the MLflow run (repeatable; an orchestrator "
                                                          "finds its run by it).", metavar="KEY=VALUE")] = None,
    config: ConfigFile = None,
    profile: Profile = None,
    set_: Overrides = None,
) -> None:
    """Train VMAs on the tokenize manifest (beat-weighted CE + contrastive loss), with Lightning.

    Checkpoints go to <artifacts>/train/checkpoints/<fingerprint>/ and the final weights to
    <artifacts>/train/model.pt; the run (parameters, the full config, losses, device stats, the
    DVC data version, curves) is logged to MLflow. Multi-GPU: set train.strategy to ddp or fsdp and
    launch with torchrun (`torchrun --nproc-per-node 8 -m vmas.cli.main train`).
    """
    from vmas.tracking.runs import mlflow_logger
    from vmas.training.train import train

    tags = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--tag {item!r}: expected KEY=VALUE")
        tags[key] = value
    cfg = resolve(config, profile, set_)
    logger = mlflow_logger(cfg, "train", {"stage": "train", **tags}) if track else None
    report = train(cfg, logger=logger, resume=resume, progress=progress, max_steps=max_steps)
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
