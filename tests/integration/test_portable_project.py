"""A finished project folder copied or moved elsewhere goes on from where it was, in its new place.

The project is what a user has: ``params.yaml`` with the shipped relative paths (``data``,
``artifacts``), commands run from its root. It ingests three videos, downloads and probes them, and
logs an MLflow run with a file. Then the whole folder is copied (``shutil.copytree``, which keeps
modification times; or without them, as ``cp -r`` does) or moved, and used again from the new place:
the new-video sensor must find nothing new (no phantom batch), ingest must add nothing, the row stages
must have nothing to do, MLflow must log into the new folder, and the old folder must be left as it was.
"""

import contextlib
import os
import shutil
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

from orchestration.automation import new_videos
from orchestration.resources import VmasConfig
from vmas.config import load_config
from vmas.curation.batches import batches, unregistered_files
from vmas.curation.ingest import ingest_data_dir
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.media import write_mp4
from vmas.tracking.runs import mlflow_logger, tracking_uri

pytestmark = pytest.mark.slow

ROW_STAGES = ("download", "probe")


def _video(path: Path, shade: int) -> None:
    t = np.arange(16000) / 16000
    write_mp4(path, [np.full((32, 32, 3), shade + i, np.uint8) for i in range(10)], 10,
              audio=np.sin(2 * np.pi * 220 * t)[None] * 0.1, sample_rate=16000)


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _log_run(name: str, note: Path) -> str:
    """What a tracked command does: an MLflow run through the Lightning logger, with a metric and a file."""
    cfg = load_config()
    logger = mlflow_logger(cfg, name)
    logger.log_metrics({"value": 1.0})
    logger.experiment.log_artifact(logger.run_id, str(note), "notes")
    logger.finalize("success")
    return logger.run_id


@pytest.fixture(scope="module")
def finished(tmp_path_factory, repo):
    """A project that ingested, downloaded and probed three videos as batch ``first`` and logged a run."""
    project = tmp_path_factory.mktemp("portable") / "project"
    (project / "data" / "clips").mkdir(parents=True)
    for i in range(3):
        _video(project / "data" / "clips" / f"v{i}.mp4", 60 * i)
    shutil.copy(repo / "configs" / "demo.yaml", project / "params.yaml")  # data_dir: data, artifacts_dir: artifacts
    (project / "note.txt").write_text("logged before the move")
    with contextlib.chdir(project):
        cfg = load_config()
        assert ingest_data_dir(cfg, progress=False, batch="first")["new"] == 3
        for name in ROW_STAGES:
            assert run_stage(name, cfg, progress=False).errors == 0
        run = _log_run("before", project / "note.txt")
    paths = [r["path"] for r in Manifest(project / "artifacts" / "manifests" / "ingest").iter_rows(["path"])]
    assert sorted(paths) == ["clips/v0.mp4", "clips/v1.mp4", "clips/v2.mp4"]  # relative to the data folder
    return project, run


def _copy_without_times(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=shutil.copy)  # like `cp -r`: every file gets a new time


@pytest.mark.parametrize("how", ["copytree", "cp", "move"])
def test_a_copied_or_moved_project_goes_on_in_its_new_place(finished, tmp_path, how):
    project, run = finished
    old = tmp_path / "old"
    shutil.copytree(project, old)  # each case starts from its own copy of the finished project
    new = tmp_path / "elsewhere" / "project"
    before = _listing(old)
    if how == "cp":
        _copy_without_times(old, new)
        assert _listing(new)["data/clips/v0.mp4"] != before["data/clips/v0.mp4"]  # the times did change
    else:
        shutil.copytree(old, new)
    if how == "move":
        gone = tmp_path / "moved-away"
        os.rename(old, gone)  # what the old paths named is no longer there to read or write
    (tmp_path / "note2.txt").write_text("logged after the move")

    with contextlib.chdir(new):
        cfg = load_config()
        ingest_root = manifest_dir(cfg, "ingest")
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("ingest_batches", ["first"])  # the partitions the project's Dagster knew
        tick = new_videos(dg.build_sensor_context(instance=instance, resources={"vmas": VmasConfig()}))
        assert isinstance(tick, dg.SkipReason), tick  # no request: no phantom batch
        assert unregistered_files(cfg, ingest_root) == []
        counts = ingest_data_dir(cfg, progress=False)
        assert (counts["new"], counts["known"], counts["duplicate"], counts["batches"]) == (0, 3, 0, [])
        assert batches(ingest_root) == ["first"]
        for name in ROW_STAGES:
            report = run_stage(name, cfg, progress=False)
            assert (report.processed, report.skipped, report.errors) == (0, 3, 0), name
        after = _log_run("after", tmp_path / "note2.txt")
        client = mlflow.MlflowClient(tracking_uri(cfg))
        mlruns = new / "artifacts" / "mlruns"
        for run_id, note in ((after, "note2.txt"), (run, "note.txt")):
            uri = client.get_run(run_id).info.artifact_uri
            assert uri.startswith(mlruns.as_uri() + "/"), uri
            assert (Path(uri.removeprefix("file://")) / "notes" / note).is_file()
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        assert experiment.artifact_location == mlruns.as_uri()
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    if how == "move":
        assert not old.exists()  # nothing recreated the old place
        assert _listing(gone) == before
    else:
        assert _listing(old) == before  # the original project was not touched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["elsewhere", "note2.txt", "moved-away" if how == "move" else "old"])
