"""The vmas Dagster code location: ``dagster dev`` in the repository root loads it (pyproject's
``[tool.dagster]``), as does ``dagster-webserver -m orchestration.definitions``.

Environment: ``VMAS_CONFIG`` (a config file; default ./params.yaml) or ``VMAS_PROFILE``,
``VMAS_WORKERS`` (curation worker processes), ``VMAS_DEMO_VIDEOS`` (videos the ``generate``
asset gives music, separated by ``:``), ``VMAS_MLFLOW_UI`` (where metadata links point), and
``VMAS_TRAINING_LAUNCHER``: ``local`` (default: train in the run's process) or ``kubernetes`` (a
PyTorchJob whose spec comes from ``VMAS_K8S_<FIELD>``, one variable per field of
``orchestration.kubernetes_training.TrainingJobSpec``: ``VMAS_K8S_IMAGE`` (required),
``VMAS_K8S_NAMESPACE``, ``VMAS_K8S_NODES``, ``VMAS_K8S_GPUS_PER_NODE``, ``VMAS_K8S_NODE_SELECTOR``
(JSON) and the others; unset or empty keeps the field's default).
"""

import json
import os

import dagster as dg

from orchestration.assets.curation import curation_assets
from orchestration.assets.model import model_assets
from orchestration.automation import new_videos, retrain_schedule
from orchestration.kubernetes_training import KubernetesTrainingLauncher, TrainingJobSpec
from orchestration.resources import LocalTrainingLauncher, MlflowTracking, TrainingLauncher, VmasConfig


def build_definitions(vmas: VmasConfig, mlflow_ui: str = "http://127.0.0.1:5000",
                      launcher: TrainingLauncher | None = None) -> dg.Definitions:
    """The assets, checks, sensor and schedule with these resources (tests build their own)."""
    return dg.Definitions(
        assets=[*curation_assets, *model_assets],
        sensors=[new_videos],
        schedules=[retrain_schedule(vmas.load().retrain.cron)],
        resources={"vmas": vmas, "launcher": launcher or LocalTrainingLauncher(),
                   "mlflow": MlflowTracking(ui_url=mlflow_ui)},
    )


def launcher_from_env(env: dict[str, str]) -> TrainingLauncher:
    """The launcher ``VMAS_TRAINING_LAUNCHER`` names; a Kubernetes one takes its spec from ``VMAS_K8S_*``.

    Each ``VMAS_K8S_<FIELD>`` sets that field of :class:`TrainingJobSpec`, so the defaults stay in
    the spec: text fields as they are, the others (numbers, flags, the node selector) as JSON.
    """
    kind = env.get("VMAS_TRAINING_LAUNCHER", "local")
    if kind == "local":
        return LocalTrainingLauncher()
    if kind != "kubernetes":
        raise ValueError(f"VMAS_TRAINING_LAUNCHER={kind!r}: expected local or kubernetes")
    if not env.get("VMAS_K8S_IMAGE"):
        raise ValueError("VMAS_TRAINING_LAUNCHER=kubernetes needs VMAS_K8S_IMAGE (the image the training pods run)")
    spec = {}
    for name, field in TrainingJobSpec.model_fields.items():
        value = env.get(f"VMAS_K8S_{name.upper()}")
        if value:
            spec[name] = value if field.annotation is str else json.loads(value)
    return KubernetesTrainingLauncher(spec=TrainingJobSpec(**spec))


defs = build_definitions(
    VmasConfig(config_file=os.environ.get("VMAS_CONFIG"), profile=os.environ.get("VMAS_PROFILE"),
               workers=int(os.environ.get("VMAS_WORKERS", "1")),
               demo_videos=[v for v in os.environ.get("VMAS_DEMO_VIDEOS", "").split(":") if v]),
    mlflow_ui=os.environ.get("VMAS_MLFLOW_UI", "http://127.0.0.1:5000"),
    launcher=launcher_from_env(dict(os.environ)))
