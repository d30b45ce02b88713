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

``VMAS_EXECUTOR``: unset (default: Dagster's, each step a process of the run) or ``k8s`` (each step
a Kubernetes Job, at most ``VMAS_K8S_MAX_CONCURRENT_STEPS`` per run, default 4), its pod sized and
placed by the asset's ``dagster-k8s/config`` tag, from ``VMAS_K8S_CURATION_<FIELD>``, one variable
per field of ``orchestration.kubernetes_curation.CurationPods`` (``..._GPU_STAGES``, ``..._CPU``,
``..._MEMORY``, ``..._NODE_SELECTOR`` (JSON), ``..._GPU_NODE_SELECTOR`` and the others).

The ``curate`` job is the batch-scoped curation assets over the ``ingest_batches`` partitions: a
backfill of it (``dagster job backfill -j curate --all``, or the UI) is one run per ingest batch.
"""

import json
import os

import dagster as dg

from orchestration.assets.curation import BATCH_ASSETS, GROUP as CURATION, curation_assets
from orchestration.assets.model import model_assets
from orchestration.automation import new_videos, retrain_schedule
from orchestration.kubernetes_curation import executor_from_env
from orchestration.kubernetes_training import KubernetesTrainingLauncher, TrainingJobSpec
from orchestration.resources import LocalTrainingLauncher, MlflowTracking, TrainingLauncher, VmasConfig

curate = dg.define_asset_job(
    "curate", selection=dg.AssetSelection.assets(*BATCH_ASSETS),
    # partitioned by ingest_batches, as its assets are (this Dagster infers it; partitions_def= is deprecated)
    description=f"The {CURATION} assets that run per ingest batch (a partition), with their checks; a backfill "
                "runs each batch in its own run. Dataset-scoped stages (train_codec, shard) are not in it: "
                "tokenize needs the codec train_codec trains (or codec.pretrained), and shard splits every "
                "batch's videos into train and validation.")


def build_definitions(vmas: VmasConfig, mlflow_ui: str = "http://127.0.0.1:5000",
                      launcher: TrainingLauncher | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """The assets, checks, ``curate`` job, sensor and schedule with these resources (tests build their own);
    ``executor`` None: Dagster's default."""
    return dg.Definitions(
        assets=[*curation_assets, *model_assets],
        jobs=[curate],
        executor=executor,
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


def definitions_from_env(env: dict[str, str]) -> dg.Definitions:
    """The code location as this environment configures it (the variables in this module's docstring),
    but for the curation assets' pod tags: ``VMAS_K8S_CURATION_*`` are read from the process's environment
    when ``orchestration.assets.curation`` is imported."""
    return build_definitions(
        VmasConfig(config_file=env.get("VMAS_CONFIG"), profile=env.get("VMAS_PROFILE"),
                   workers=int(env.get("VMAS_WORKERS", "1")),
                   demo_videos=[v for v in env.get("VMAS_DEMO_VIDEOS", "").split(":") if v]),
        mlflow_ui=env.get("VMAS_MLFLOW_UI", "http://127.0.0.1:5000"),
        launcher=launcher_from_env(env), executor=executor_from_env(env))


defs = definitions_from_env(dict(os.environ))
