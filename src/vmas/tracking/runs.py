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


def parent_run(cfg: Config, run_name: str, key: str, tags: dict | None = None) -> str:
    """The id of the run named ``run_name`` tagged ``parent.key = key`` in ``tracking.experiment``; created
    when there is none, so a rerun (or a later call adding children) finds the same parent."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        cfg.tracking.experiment, artifact_location=(Path(cfg.paths.artifacts_dir).resolve() / "mlruns").as_uri())
    found = client.search_runs([experiment_id], filter_string=f"tags.`parent.key` = '{key}' and "
                                                              f"tags.`mlflow.runName` = '{run_name}'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"parent.key": key, "profile": cfg.profile, **(tags or {})})
    return run.info.run_id


def child_logger(cfg: Config, parent: str, run_name: str, tags: dict | None = None):
    """Lightning's ``MLFlowLogger`` on the child run ``run_name`` of ``parent`` (nested in MLflow's UI), the
    existing one when there is one."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    found = client.search_runs([experiment.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent}' and tags.`mlflow.runName` = '{run_name}'"))
    if found:
        return MLFlowLogger(experiment_name=cfg.tracking.experiment, tracking_uri=tracking_uri(cfg),
                            run_id=found[0].info.run_id)
    return mlflow_logger(cfg, run_name, {"mlflow.parentRunId": parent, **(tags or {})})


def log_to_run(cfg: Config, run_id: str, metrics: dict[str, float], tags: dict[str, str], files: list[Path],
               artifact_path: str) -> None:
    """Metrics, tags and files on an existing run."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    for name, value in tags.items():
        client.set_tag(run_id, name, value)
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path)
