"""The MLflow run a command logs to, as a Lightning logger (SQLite store under artifacts by default).

The default store (``tracking.uri`` null) lives with the project: ``<artifacts_dir>/mlflow.db``, run
artifacts in ``<artifacts_dir>/mlruns``. MLflow records an experiment's artifact root, and each run's,
model version's and logged model's artifact URI, as absolute ``file://`` URIs (it resolves a relative
``artifact_location`` against the working directory when the experiment is created), so a copied or
moved project would go on writing into the old folder. :func:`tracking_uri` therefore rebases, once
per process, every such URI of the default store that points at another ``.../mlruns`` onto this
project's (:func:`rebase_store`). A store given by ``tracking.uri`` (a server, a shared database) is
left as it is: where its artifacts go is the server's business.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from vmas.config import Config

log = logging.getLogger(__name__)

# MLflow 3 opens an experiment in the view its kind tag names; without one the UI may pick its GenAI
# (traces) view. "custom_model_development" is its classic machine-learning kind (runs, metrics,
# models; see mlflow/assistant/skills/mlflow-onboarding/SKILL.md and the UI's ExperimentKind enum).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
ARTIFACTS_FOLDER = "mlruns"
# the columns of MLflow's SQL store (tracking and model registry, one database) that hold artifact URIs
# (trace_tags: a trace's ``mlflow.artifactLocation``); only values under an old root are rewritten
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "source"),
                    ("model_versions", "storage_location"), ("trace_tags", "value"))

_rebased: set[tuple[str, str]] = set()  # (database, artifact root) pairs already checked by this process


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri``, or ``sqlite:///<artifacts_dir>/mlflow.db`` (absolute, so any working directory agrees;
    its artifact URIs rebased onto this project when it was copied or moved, see :func:`rebase_store`)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    artifacts = Path(cfg.paths.artifacts_dir).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    database = artifacts / "mlflow.db"
    rebase_store(database, artifact_location(cfg))
    return f"sqlite:///{database}"


def artifact_location(cfg: Config) -> str:
    """Where a new experiment keeps its run artifacts: ``<artifacts_dir>/mlruns`` as a file URI."""
    return (Path(cfg.paths.artifacts_dir).resolve() / ARTIFACTS_FOLDER).as_uri()


def rebase_store(database: Path, root: str) -> dict[str, int]:
    """Point the artifact URIs of the SQLite store ``database`` that lie under another project's
    ``.../mlruns`` at ``root`` (this project's ``file://.../mlruns``); returns ``{old root: rows changed}``.

    Why: MLflow stores absolute artifact URIs, and offers no call to change an experiment's. A project
    folder copied (``cp -r``, ``shutil.copytree``) or moved carries its ``mlflow.db`` and its ``mlruns``
    with it, and the copied URIs name the old folder: runs would log there (or fail, once it is gone),
    ``models:/`` would load from there. An experiment whose ``artifact_location`` is a ``file:`` URI
    ending in ``/mlruns`` (the layout :func:`artifact_location` creates) and is not ``root`` is taken as
    such a copy; it and every URI beneath it (its runs, logged models, model versions) are rewritten in
    one transaction. Checked once per process; a missing or fresh database is left alone, and a
    database that cannot be written (a read-only copy) only logs a warning.
    """
    if (str(database), root) in _rebased or not database.is_file():
        return {}
    changed: dict[str, int] = {}
    try:
        with closing(sqlite3.connect(database, timeout=60)) as db, db:
            tables = {name: {c[1] for c in db.execute(f"PRAGMA table_info('{name}')")}
                      for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "artifact_location" not in tables.get("experiments", ()):
                return {}  # not (yet) an MLflow store
            old_roots = {location for (location,) in db.execute("SELECT artifact_location FROM experiments")
                         if _moved_root(location, root)}
            for old in sorted(old_roots):
                changed[old] = 0
                for table, column in LOCATION_COLUMNS:
                    if column in tables.get(table, ()):
                        changed[old] += db.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                            f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                            (root, len(old) + 1, old, len(old) + 1, old + "/")).rowcount
    except sqlite3.Error as exc:
        log.warning("%s: could not point its artifact URIs at %s: %s", database, root, exc)
        return {}
    _rebased.add((str(database), root))
    for old, rows in changed.items():
        log.info("%s: artifact URIs under %s now under %s (the project was copied or moved; %d rows)",
                 database, old, root, rows)
    if changed:
        _forget_artifact_repositories()
    return changed


def _forget_artifact_repositories() -> None:
    """Drop MLflow's per-process cache of run id -> artifact repository (its old location), so that a
    process which used the store before it was rebased writes to the new place too."""
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    cache = getattr(utils, "_artifact_repos_cache", None)
    if cache is not None:
        cache.clear()


def _moved_root(location: str | None, root: str) -> bool:
    """Whether an experiment's ``location`` is another folder's ``mlruns`` (see :func:`rebase_store`)."""
    return (bool(location) and location != root and location.startswith("file:")
            and location.rstrip("/").rsplit("/", 1)[-1] == ARTIFACTS_FOLDER)


def experiment_id(client, cfg: Config) -> str:
    """The id of ``tracking.experiment`` through ``client`` (an ``MlflowClient``), created when it does not
    exist yet (artifacts under :func:`artifact_location`), and marked a model-training experiment
    (:data:`EXPERIMENT_KIND_TAG`; an explicit other kind someone chose is kept)."""
    from mlflow.exceptions import MlflowException

    name = cfg.tracking.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(cfg),
                                            tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException:  # another process created it meanwhile
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    kind = experiment.tags.get(EXPERIMENT_KIND_TAG)
    if kind is None or kind.endswith("_inferred") or kind == "no_inferred_type":
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return experiment.experiment_id


def mlflow_logger(cfg: Config, run_name: str, tags: dict | None = None):
    """Lightning's ``MLFlowLogger`` for ``tracking.experiment``; run artifacts go to ``<artifacts_dir>/mlruns``."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    uri = tracking_uri(cfg)
    experiment_id(mlflow.tracking.MlflowClient(uri), cfg)  # created and tagged here, so the logger finds it
    return MLFlowLogger(experiment_name=cfg.tracking.experiment, run_name=run_name, tracking_uri=uri,
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
    found = client.search_runs([experiment_id(client, cfg)], filter_string=(
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
