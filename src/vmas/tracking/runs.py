"""The MLflow run a command logs to, as a Lightning logger (SQLite store under artifacts by default)."""

from __future__ import annotations

from pathlib import Path

from vmas.config import Config


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri``, or ``sqlite:///<artifacts_dir>/mlflow.db`` (absolute, so any working directory agrees)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    artifacts = Path(cfg.paths.artifacts_dir).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{artifacts / 'mlflow.db'}"


def mlflow_logger(cfg: Config, run_name: str, tags: dict | None = None):
    """Lightning's ``MLFlowLogger`` for ``tracking.experiment``; run artifacts go to ``<artifacts_dir>/mlruns``."""
    from lightning.pytorch.loggers import MLFlowLogger

    artifacts = (Path(cfg.paths.artifacts_dir).resolve() / "mlruns").as_uri()
    return MLFlowLogger(experiment_name=cfg.tracking.experiment, run_name=run_name, tracking_uri=tracking_uri(cfg),
                        artifact_location=artifacts, tags={"profile": cfg.profile, **(tags or {})})
