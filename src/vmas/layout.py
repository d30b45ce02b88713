"""Where every artifact lives under ``paths.artifacts_dir``: one function per kind of path.

Stages, the CLI, the Dagster assets and the Great Expectations suites all ask here, so a path is
named once (``dvc.yaml`` spells the same paths with ``${paths.artifacts_dir}``; the contract test
keeps the two in step). The layout::

    <artifacts>/manifests/<stage>/           a stage's Parquet manifest (parts)
    <artifacts>/manifests/<stage>.summary.json
    <artifacts>/<stage>/                     what a stage writes besides its manifest
    <artifacts>/train_codec/compression_state_dict.bin   the gated demo codec
    <artifacts>/shard/{train,val}/<batch>/shard-NNNNNN.tar, index.parquet   (or at shard.url)
    <artifacts>/train/model.pt               the trained model (see vmas.models.package)
    <artifacts>/train/checkpoints/<fingerprint>/
    <artifacts>/evaluate/{evaluation.json, metrics.json, report.html}
    <artifacts>/register/registration.json
    <artifacts>/generate/                    videos given music by the generate asset

Nothing here imports more than ``pathlib``: every layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmas.config import Config

CODEC_FILE = "compression_state_dict.bin"  # audiocraft's export name: its own loaders find the file by it
MODEL_FILE = "model.pt"
EVALUATION_FILE = "evaluation.json"
METRICS_FILE = "metrics.json"  # DVC's metrics file
REPORT_FILE = "report.html"
REGISTRATION_FILE = "registration.json"


def artifacts_dir(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts_dir)


def manifest_dir(cfg: Config, stage: str) -> Path:
    """``<artifacts>/manifests/<stage>``: the stage's manifest."""
    return artifacts_dir(cfg) / "manifests" / stage


def summary_path(cfg: Config, stage: str) -> Path:
    """``<artifacts>/manifests/<stage>.summary.json``: what the stage's last full run did."""
    return artifacts_dir(cfg) / "manifests" / f"{stage}.summary.json"


def output_dir(cfg: Config, stage: str) -> Path:
    """``<artifacts>/<stage>``: the files a stage (or the ``generate`` asset, the ablation) writes."""
    return artifacts_dir(cfg) / stage


def shard_url(cfg: Config) -> str:
    """Where the ``shard`` stage writes: ``shard.url`` (any fsspec URL), or ``<artifacts>/shard``."""
    return cfg.shard.url or str(output_dir(cfg, "shard"))


def trained_codec_path(cfg: Config) -> Path:
    """Where ``train_codec`` publishes a codec that passed its gate."""
    return output_dir(cfg, "train_codec") / CODEC_FILE


def model_path(cfg: Config, out: Path | None = None) -> Path:
    """The trained model in ``out`` (default ``<artifacts>/train``)."""
    return (Path(out) if out is not None else output_dir(cfg, "train")) / MODEL_FILE


def checkpoint_dir(cfg: Config, fingerprint: str, out: Path | None = None) -> Path:
    """``<out>/checkpoints/<fingerprint>/`` (``out`` default ``<artifacts>/train``): the checkpoints of one
    data set and settings."""
    return (Path(out) if out is not None else output_dir(cfg, "train")) / "checkpoints" / fingerprint


def evaluation_path(cfg: Config, out: Path | None = None) -> Path:
    """``evaluation.json`` in ``out`` (default ``<artifacts>/evaluate``)."""
    return (Path(out) if out is not None else output_dir(cfg, "evaluate")) / EVALUATION_FILE


def metrics_path(cfg: Config, out: Path | None = None) -> Path:
    """``metrics.json`` (the flat numbers) in ``out`` (default ``<artifacts>/evaluate``)."""
    return (Path(out) if out is not None else output_dir(cfg, "evaluate")) / METRICS_FILE


def report_path(cfg: Config, out: Path | None = None) -> Path:
    """``report.html`` in ``out`` (default ``<artifacts>/evaluate``)."""
    return (Path(out) if out is not None else output_dir(cfg, "evaluate")) / REPORT_FILE


def registration_path(cfg: Config) -> Path:
    """``<artifacts>/register/registration.json``: the last registration's outcome."""
    return output_dir(cfg, "register") / REGISTRATION_FILE
