"""The default MLflow store travels with its project: a copied or moved project logs, and loads models, from
its own folder; and its experiment opens as a model-training experiment in MLflow 3's UI."""

import os
import shutil
from pathlib import Path

import mlflow
import pytest

from vmas.config import load_config
from vmas.tracking.runs import (EXPERIMENT_KIND_TAG, TRAINING_KIND, artifact_location, experiment_id, log_to_run,
                                mlflow_logger, parent_run, rebase_store, tracking_uri)


def _cfg(repo, project: Path):
    return load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={project / 'artifacts'}"])


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _files_under(uri: str) -> list[str]:
    return sorted(p.name for p in Path(uri.removeprefix("file://")).rglob("*") if p.is_file())


def test_experiments_are_training_experiments_under_the_artifacts(repo, tmp_path):
    cfg = _cfg(repo, tmp_path)
    client = mlflow.MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment(experiment_id(client, cfg))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND == "custom_model_development"
    assert experiment.artifact_location == artifact_location(cfg) == (tmp_path / "artifacts" / "mlruns").as_uri()

    other = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"experiment": "older"})})
    old = client.create_experiment("older")  # as an earlier vmas (or the UI) left it: no kind
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert experiment_id(client, other) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    client.set_experiment_tag(old, EXPERIMENT_KIND_TAG, "finetuning")  # a person's choice stays
    experiment_id(client, other)
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "finetuning"


def test_a_moved_project_logs_and_loads_models_from_its_own_folder(repo, tmp_path):
    old, new = tmp_path / "old" / "project", tmp_path / "new" / "project"
    cfg = _cfg(repo, old)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    run = parent_run(cfg, "run", "k1")
    log_to_run(cfg, run, {"m": 1.0}, {}, [note], "files")
    client = mlflow.MlflowClient(tracking_uri(cfg), registry_uri=tracking_uri(cfg))
    client.create_registered_model("m")
    client.create_model_version("m", f"{client.get_run(run).info.artifact_uri}/files", run_id=run)
    assert client.get_run(run).info.artifact_uri.startswith((old / "artifacts" / "mlruns").as_uri() + "/")

    shutil.copytree(old, new)
    gone = tmp_path / "old" / "moved-away"
    os.rename(old, gone)  # nothing may read or write the old place any more
    before = _listing(gone)

    moved = _cfg(repo, new)
    uri = tracking_uri(moved)
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    root = (new / "artifacts" / "mlruns").as_uri()
    assert client.get_experiment(experiment_id(client, moved)).artifact_location == root
    again = parent_run(moved, "run", "k1")  # the same run, found again ...
    assert again == run and client.get_run(run).info.artifact_uri.startswith(root + "/")
    (tmp_path / "more.txt").write_text("more")
    log_to_run(moved, run, {"m": 2.0}, {}, [tmp_path / "more.txt"], "files")  # ... logs into the new folder
    assert _files_under(client.get_run(run).info.artifact_uri) == ["more.txt", "note.txt"]
    fresh = parent_run(moved, "run", "k2")
    assert client.get_run(fresh).info.artifact_uri.startswith(root + "/")
    logger = mlflow_logger(moved, "lightning")
    logger.log_metrics({"x": 1.0})
    assert client.get_run(logger.run_id).info.artifact_uri.startswith(root + "/")
    version = client.get_model_version("m", "1")
    assert version.source.startswith(root + "/")
    mlflow.set_registry_uri(uri)
    try:
        fetched = Path(mlflow.artifacts.download_artifacts("models:/m/1", dst_path=str(tmp_path / "dl")))
    finally:
        mlflow.set_registry_uri("")
    assert (fetched / "note.txt").read_text() == "hello"
    assert not old.exists() and _listing(gone) == before  # nothing written to the old folder, or recreated


def test_rebasing_is_limited_to_other_projects_mlruns(tmp_path):
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    client = mlflow.MlflowClient(uri)
    mine = (tmp_path / "artifacts" / "mlruns").as_uri()
    copied = client.create_experiment("copied", artifact_location="file:///elsewhere/artifacts/mlruns")
    chosen = client.create_experiment("chosen", artifact_location="file:///elsewhere/artifacts/mlruns-by-hand")
    prefix = client.create_experiment("prefix", artifact_location="file:///elsewhere/artifacts/mlruns2/x")
    assert rebase_store(database, mine) == {"file:///elsewhere/artifacts/mlruns": 1}
    assert client.get_experiment(copied).artifact_location == mine
    assert client.get_experiment(chosen).artifact_location == "file:///elsewhere/artifacts/mlruns-by-hand"
    assert client.get_experiment(prefix).artifact_location == "file:///elsewhere/artifacts/mlruns2/x"
    assert rebase_store(database, mine) == {}  # once per process
    assert rebase_store(tmp_path / "none.db", mine) == {} and not (tmp_path / "none.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_copy_only_warns(tmp_path, caplog):
    database = tmp_path / "ro" / "mlflow.db"
    database.parent.mkdir()
    mlflow.MlflowClient(f"sqlite:///{database}").create_experiment("x", artifact_location="file:///a/mlruns")
    os.chmod(database, 0o444)
    os.chmod(database.parent, 0o555)
    try:
        assert rebase_store(database, "file:///b/mlruns") == {}
        assert "could not point its artifact URIs" in caplog.text
    finally:
        os.chmod(database.parent, 0o755)
        os.chmod(database, 0o644)
