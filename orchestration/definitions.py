"""The vmas Dagster code location: ``dagster dev`` in the repository root loads it (pyproject's
``[tool.dagster]``), as does ``dagster-webserver -m orchestration.definitions``.

Environment: ``VMAS_CONFIG`` (a config file; default ./params.yaml) or ``VMAS_PROFILE``,
``VMAS_WORKERS`` (curation worker processes), ``VMAS_DEMO_VIDEOS`` (videos the ``generate``
asset gives music, separated by ``:``), ``VMAS_MLFLOW_UI`` (where metadata links point).
"""

import os

import dagster as dg

from orchestration.assets.curation import curation_assets
from orchestration.assets.model import model_assets
from orchestration.automation import new_videos, retrain_schedule
from orchestration.resources import LocalTrainingLauncher, MlflowTracking, VmasConfig


def build_definitions(vmas: VmasConfig, mlflow_ui: str = "http://127.0.0.1:5000") -> dg.Definitions:
    """The assets, checks, sensor and schedule with these resources (tests build their own)."""
    return dg.Definitions(
        assets=[*curation_assets, *model_assets],
        sensors=[new_videos],
        schedules=[retrain_schedule(vmas.load().retrain.cron)],
        resources={"vmas": vmas, "launcher": LocalTrainingLauncher(), "mlflow": MlflowTracking(ui_url=mlflow_ui)},
    )


defs = build_definitions(
    VmasConfig(config_file=os.environ.get("VMAS_CONFIG"), profile=os.environ.get("VMAS_PROFILE"),
               workers=int(os.environ.get("VMAS_WORKERS", "1")),
               demo_videos=[v for v in os.environ.get("VMAS_DEMO_VIDEOS", "").split(":") if v]),
    mlflow_ui=os.environ.get("VMAS_MLFLOW_UI", "http://127.0.0.1:5000"))
