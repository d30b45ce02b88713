"""Dagster resources: which vmas configuration the assets run with, MLflow, and where training runs.

Each is a ``ConfigurableResource``, so the Dagster UI's launchpad can change them per run
(another profile, a ``--set`` override, more workers) without touching code.
"""

import dagster as dg

from vmas.config import Config, load_config


class VmasConfig(dg.ConfigurableResource):
    """The vmas configuration: ``config_file`` (default ``./params.yaml``, the active profile) or a
    named ``profile``, plus ``overrides`` (``key.path=value``, as ``vmas --set``)."""

    config_file: str | None = None
    profile: str | None = None
    overrides: list[str] = []
    workers: int = 1  # worker processes per curation stage
    demo_videos: list[str] = []  # videos the `generate` asset gives music (default: a held-out video)

    def load(self) -> Config:
        return load_config(self.config_file, self.profile, self.overrides)


class MlflowTracking(dg.ConfigurableResource):
    """Where runs and models are tracked, and the MLflow UI the asset metadata links to.

    ``tracking_uri`` None keeps the configuration's ``tracking.uri`` (by default the SQLite store
    ``<artifacts>/mlflow.db``); ``ui_url`` is where ``mlflow ui`` serves that store.
    """

    tracking_uri: str | None = None
    ui_url: str = "http://127.0.0.1:5000"

    def apply(self, cfg: Config) -> Config:
        if self.tracking_uri is None:
            return cfg
        return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": self.tracking_uri})})

    def run_url(self, cfg: Config, run_id: str | None) -> str | None:
        if not run_id:
            return None
        from mlflow import MlflowClient

        from vmas.tracking.runs import tracking_uri

        experiment = MlflowClient(tracking_uri(cfg)).get_run(run_id).info.experiment_id
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"

    def model_url(self, name: str, version: int) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{name}/versions/{version}"


class TrainingLauncher(dg.ConfigurableResource):
    """Runs ``vmas.training.train.train`` somewhere and returns its report (``report.json``'s content)."""

    def launch(self, cfg: Config, tags: dict[str, str]) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not launch training")


class LocalTrainingLauncher(TrainingLauncher):
    """Trains in the Dagster run's own process, on this machine's devices (``train.accelerator``),
    logging to MLflow like ``vmas train``."""

    progress: bool = False

    def launch(self, cfg: Config, tags: dict[str, str]) -> dict:
        from vmas.tracking.runs import mlflow_logger
        from vmas.training.train import train

        return train(cfg, logger=mlflow_logger(cfg, "train", {"stage": "train", **tags}), progress=self.progress)
