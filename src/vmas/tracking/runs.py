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


def artifact_location(cfg: Config) -> str:
    """Where a new experiment keeps its run artifacts: ``<artifacts_dir>/mlruns`` as a file URI."""
    return (Path(cfg.paths.artifacts_dir).resolve() / "mlruns").as_uri()


def experiment_id(client, cfg: Config) -> str:
    """The id of ``tracking.experiment`` through ``client`` (an ``MlflowClient``), created when it does not exist yet."""
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(cfg.tracking.experiment, artifact_location=artifact_location(cfg))


def mlflow_logger(cfg: Config, run_name: str, tags: dict | None = None):
    """Lightning's ``MLFlowLogger`` for ``tracking.experiment``; run artifacts go to ``<artifacts_dir>/mlruns``."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=cfg.tracking.experiment, run_name=run_name, tracking_uri=tracking_uri(cfg),
                        artifact_location=artifact_location(cfg), tags={"profile": cfg.profile, **(tags or {})})


def parent_run(cfg: Config, run_name: str, key: str, tags: dict | None = None) -> str:
    """The id of the run named ``run_name`` tagged ``parent.key = key`` in ``tracking.experiment``; created
    when there is none, so a rerun (or a later call adding children) finds the same parent."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri(cfg))
    experiment = experiment_id(client, cfg)
    found = client.search_runs([experiment], filter_string=f"tags.`parent.key` = '{key}' and "
                                                           f"tags.`mlflow.runName` = '{run_name}'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment, run_name=run_name,
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
