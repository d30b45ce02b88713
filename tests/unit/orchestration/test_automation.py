"""The new-video sensor's decisions, on plain files and an in-memory Dagster instance (no run)."""

import dagster as dg
import pytest

from orchestration.automation import new_videos
from orchestration.resources import VmasConfig
from vmas.curation.ingest import ingest
from vmas.layout import manifest_dir


@pytest.fixture
def workspace(demo_config, tmp_path):
    cfg = demo_config.model_copy(update={"paths": demo_config.paths.model_copy(
        update={"data_dir": tmp_path / "data", "artifacts_dir": tmp_path / "artifacts"})})
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    (tmp_path / "data").mkdir()
    return cfg, VmasConfig(config_file=str(tmp_path / "config.yaml"))


def _tick(instance, vmas):
    result = new_videos(dg.build_sensor_context(instance=instance, resources={"vmas": vmas}))
    if isinstance(result, dg.SensorResult):  # what the daemon does with the request
        for add in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    return result


def test_new_files_are_one_batch_requested_once(workspace):
    cfg, vmas = workspace
    instance = dg.DagsterInstance.ephemeral()
    empty = _tick(instance, vmas)
    assert isinstance(empty, dg.SkipReason) and "no new videos" in empty.skip_message
    for name in ("a.mp4", "b.webm"):
        (cfg.paths.data_dir / name).write_bytes(name.encode() * 100)
    (cfg.paths.data_dir / "notes.txt").write_text("not a video")
    first = _tick(instance, vmas)
    [request] = first.run_requests
    assert request.partition_key.startswith("batch-") and request.run_key == request.partition_key
    assert request.tags["vmas/new_videos"] == "2"
    assert instance.get_dynamic_partitions("ingest_batches") == [request.partition_key]
    again = _tick(instance, vmas)  # polled before its run ingested them: nothing new to ask
    assert isinstance(again, dg.SkipReason) and "already named a batch" in again.skip_message


def test_batches_ingested_outside_dagster_become_partitions(workspace):
    cfg, vmas = workspace
    instance = dg.DagsterInstance.ephemeral()
    (cfg.paths.data_dir / "a.mp4").write_bytes(b"a" * 100)
    ingest(cfg, manifest_dir(cfg, "ingest"), [cfg.paths.data_dir], batch="by-hand", progress=False)  # `vmas ingest`
    [request] = _tick(instance, vmas).run_requests
    assert request.partition_key == "by-hand" and request.tags["vmas/source"] == "ingested"
    assert isinstance(_tick(instance, vmas), dg.SkipReason)
