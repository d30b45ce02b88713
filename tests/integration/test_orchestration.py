"""The Dagster graph on a tiny set, in-process, with real SQLite (Dagster and MLflow), GX and stages:
everything materialises with every check passing; a new video becomes a new partition that only
processes what is new; the schedule retrains only when due; a bad row stops everything
downstream of its stage's blocking check; the webserver serves the graph over GraphQL."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from vmas.config import load_config

pytestmark = pytest.mark.slow

ASSETS = ["ingest", "download", "probe", "filter_static", "remove_vocals", "clip", "beats", "train_codec", "tokenize",
          "shard", "train", "evaluate", "register", "generate"]
CHECKED = ["ingest", "download", "probe", "filter_static", "remove_vocals", "clip", "beats", "tokenize", "shard",
           "evaluate"]


@pytest.fixture(scope="module")
def workspace(tiny_set, tiny_pipeline, tmp_path_factory, repo):
    """Five tiny videos in data/, a config file for them, a Dagster home; ``defs`` built on that config."""
    from orchestration.definitions import build_definitions
    from orchestration.materialize import dagster_home
    from orchestration.resources import VmasConfig

    root = tmp_path_factory.mktemp("orchestration")
    videos = sorted(tiny_set.glob("*.mp4"))
    (root / "data").mkdir()
    for video in videos[:5]:
        shutil.copy2(video, root / "data" / video.name)
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[
        f"paths.data_dir={root / 'data'}", f"paths.artifacts_dir={root / 'artifacts'}", *tiny_pipeline])
    (root / "config.yaml").write_text(cfg.to_yaml())
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(root / ".dagster")
    home = dagster_home()
    defs = build_definitions(VmasConfig(config_file=str(root / "config.yaml")))
    # held back for the new-batch test: a dynamic one, which the static filter keeps
    spare = next(v for v in videos[5:] if not json.loads(v.with_suffix(".truth.json").read_text())["should_be_filtered"])
    yield {"root": root, "cfg": cfg, "defs": defs, "home": home, "spare": spare}
    if previous is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = previous


@pytest.fixture(scope="module")
def materialized(workspace):
    from orchestration.materialize import materialize_all

    with dg.DagsterInstance.get() as instance:
        results = materialize_all(instance, workspace["defs"], log_level="WARNING")
        partitions = instance.get_dynamic_partitions("ingest_batches")
    return {**workspace, "results": results, "partitions": partitions}


def _runs(results) -> list:
    return results if isinstance(results, list) else [results]


def _materialized(results) -> set[str]:
    return {e.asset_key.to_user_string() for r in _runs(results) for e in r.get_asset_materialization_events()}


def _metadata(results, asset: str) -> dict:
    [event] = [e for r in _runs(results) for e in r.get_asset_materialization_events()
               if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_whole_graph_materialises_and_every_check_passes(materialized):
    from vmas.tracking.registry import champion

    results, cfg = materialized["results"], materialized["cfg"]
    # curation of the one batch, the codec, its tokens, the shards, then the model: each run a success
    assert [sorted(_materialized(r)) for r in results] == [
        sorted(ASSETS[:7]), ["train_codec"], ["tokenize"], ["shard"], sorted(ASSETS[10:])]
    assert all(r.success for r in results)
    assert _materialized(results) == set(ASSETS)
    checks = {e.asset_key.to_user_string(): e for r in results for e in r.get_asset_check_evaluations()}
    assert sorted(checks) == sorted([*CHECKED, "train_codec"]) and all(c.passed for c in checks.values())
    gate = checks["train_codec"]
    assert gate.check_name == "codec_gate" and gate.metadata["min SI-SNR (dB)"].value == -100
    assert checks["filter_static"].metadata["rows"].value == 5
    assert any(r.data["expectation"].startswith("kept iff similarity") and r.data["success"]
               for r in checks["filter_static"].metadata["expectations"].value.records)
    # one partition: the batch the sensor logic named after the five files; the partitioned runs ran it
    assert materialized["partitions"] == [results[0].dagster_run.tags["dagster/partition"]]
    assert results[2].dagster_run.tags["dagster/partition"] == materialized["partitions"][0]
    probe = _metadata(results, "probe")
    assert probe["rows"] == 5 and probe["processed"] == 5 and probe["errors"] == 0
    assert probe["dagster/row_count"] == probe["dagster/partition_row_count"] == 5
    assert [c.name for c in probe["dagster/column_schema"].columns][:4] == ["id", "input_id", "key", "error"]
    assert _metadata(results, "shard")["dagster/row_count"] == _metadata(results, "shard")["shards"]
    assert _metadata(results, "filter_static")["kept"] + _metadata(results, "filter_static")["dropped"] == 5
    # MLflow: runs linked from the metadata, and a champion that the generate asset used
    train = _metadata(results, "train")
    assert train["steps"] == 4 and "/#/experiments/" in train["MLflow run"]
    assert train["training curves"].endswith("training_curves.png")  # the figure; inline, a sparkline per loss
    loss = train["train/loss curve"]
    assert loss.startswith("![train/loss](data:image/png;base64,") and len(loss) < 1000  # shown inline
    assert _metadata(results, "register")["version"] == champion(cfg)["version"] == 1
    assert set(_metadata(results, "evaluate")) >= {"mv_align", "fad", "kl", "retrieval_r1"}
    [video] = _metadata(results, "generate")["videos"]
    assert Path(video).is_file() and Path(video).parent == Path(cfg.paths.artifacts_dir) / "generate"


def test_the_schedule_retrains_only_when_enough_new_clips_arrived(materialized):
    from orchestration.automation import RETRAIN_ASSETS, retrain_schedule
    from orchestration.resources import VmasConfig
    from vmas.layout import manifest_dir
    from vmas.manifest import Manifest

    cfg, config = materialized["cfg"], str(materialized["root"] / "config.yaml")
    clips = sum(r["error"] is None for r in Manifest(manifest_dir(cfg, "tokenize")).iter_rows(["error"]))
    schedule = retrain_schedule(cfg.retrain.cron)
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    with dg.DagsterInstance.get() as instance:
        skip = schedule(dg.build_schedule_context(instance=instance, resources={"vmas": VmasConfig(config_file=config)}))
        # another registry has no champion: training is due, once per data version (the run key)
        other = VmasConfig(config_file=config, overrides=["register.name=another"])
        request = schedule(dg.build_schedule_context(instance=instance, resources={"vmas": other}))
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message == (f"0 new clips since champion version 1 was trained on {clips}; "
                                 f"retrain.min_new_clips is {cfg.retrain.min_new_clips}")
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("retrain-")
    assert request.tags["vmas/clips"] == str(clips)
    job = materialized["defs"].resolve_job_def(schedule.job_name)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(RETRAIN_ASSETS)


def test_a_new_video_is_a_new_partition_that_processes_only_itself(materialized):
    """The sensor names a batch for one new video; materialising curates only it. Its clips retrain
    the demo codec (it learns from every clip), so the first batch is tokenized again with it and
    training still finds one codec behind every token."""
    from orchestration.automation import new_videos
    from orchestration.materialize import materialize_all
    from orchestration.resources import VmasConfig

    defs, root = materialized["defs"], materialized["root"]
    vmas = VmasConfig(config_file=str(root / "config.yaml"))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(new_videos(dg.build_sensor_context(instance=instance, resources={"vmas": vmas})),
                          dg.SkipReason)
        shutil.copy2(materialized["spare"], root / "data" / materialized["spare"].name)
        [request] = new_videos(dg.build_sensor_context(instance=instance, resources={"vmas": vmas})).run_requests
        assert request.tags["vmas/new_videos"] == "1" and [request.partition_key] != materialized["partitions"]
        runs = materialize_all(instance, defs, log_level="WARNING")
        assert instance.get_dynamic_partitions("ingest_batches") == [*materialized["partitions"], request.partition_key]
    assert all(r.success for r in runs)
    curation, codec, *tokenize, shards, model = runs
    assert curation.dagster_run.tags["dagster/partition"] == request.partition_key
    assert _metadata(curation, "ingest")["new"] == 1 and _metadata(curation, "probe")["rows"] == 1
    assert _metadata(curation, "probe")["processed"] == 1  # the first batch's five are not even looked at
    assert [r.dagster_run.tags["dagster/partition"] for r in tokenize] == [*materialized["partitions"],
                                                                           request.partition_key]
    assert _metadata(curation, "clip")["rows"] > _metadata(curation, "clip")["errors"]  # it gave clips
    # new clips retrain the demo codec, and the first batch is tokenized again with it
    assert _metadata(codec, "train_codec")["train clips"] > _metadata(materialized["results"], "train_codec")["train clips"]
    assert _metadata(tokenize[0], "tokenize")["processed"] > 0
    assert _metadata(shards, "shard")["written"] > 0  # new tokens: their batches are sharded again
    assert _metadata(model, "register")["version"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


GRAPH_QUERY = """query {
  assetNodes { assetKey { path } groupName isPartitioned
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking
      executionForLatestMaterialization { status } } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name
    sensors { name sensorState { status } } schedules { name cronSchedule } } } }
}"""


def test_the_webserver_serves_the_graph_checks_sensor_and_schedule(materialized):
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    assert not validate(create_schema().graphql_schema, parse(GRAPH_QUERY))
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(materialized["home"]),
           "VMAS_CONFIG": str(materialized["root"] / "config.yaml")}
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p",
                               str(port), "-m", "orchestration.definitions"], cwd=materialized["root"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "the webserver did not come up in 120 s"
                time.sleep(0.5)
        data = _graphql(port, GRAPH_QUERY)
    finally:
        server.terminate()  # its own PID: the webserver stops its code server itself
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    nodes = {n["assetKey"]["path"][0]: n for n in data["assetNodes"]}
    assert sorted(nodes) == sorted(ASSETS)
    assert nodes["probe"]["isPartitioned"] and not nodes["train"]["isPartitioned"]
    for name in CHECKED:
        [check] = nodes[name]["assetChecksOrError"]["checks"]
        assert check["name"] == "great_expectations" and check["blocking"] is True
        assert check["executionForLatestMaterialization"]["status"] == "SUCCEEDED"  # the in-process run's
    [repository] = data["repositoriesOrError"]["nodes"]
    assert [s["name"] for s in repository["sensors"]] == ["new_videos"]
    assert repository["schedules"] == [{"name": "retrain", "cronSchedule": materialized["cfg"].retrain.cron}]


def test_a_failing_check_stops_everything_downstream(materialized):
    """A probe row with an impossible frame rate: probe's blocking check fails; nothing after it runs."""
    from vmas.curation import STAGES
    from vmas.curation.batches import batch_video_ids
    from vmas.layout import manifest_dir
    from vmas.manifest import Manifest

    cfg, defs = materialized["cfg"], materialized["defs"]
    batch = materialized["partitions"][0]
    probe = Manifest(manifest_dir(cfg, "probe"), STAGES["probe"].schema).group(batch)
    row = next(r for r in probe.iter_rows() if r["id"] in batch_video_ids(manifest_dir(cfg, "ingest"), batch))
    probe.append([{**row, "fps": 1000.0}])  # same input and key: "done", so the stage keeps it
    try:
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, partition_key=batch, raise_on_error=False)
    finally:
        probe.append([row])  # the good row supersedes the bad one again
    assert not result.success
    # the checked asset itself is written; nothing after it
    assert _materialized(result) == {"ingest", "download", "probe"}
    failed = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if not e.passed}
    assert list(failed) == ["probe"]
    assert failed["probe"].metadata["failed: fps in range"].value == 1
    expectations = failed["probe"].metadata["expectations"].value.records
    [fps] = [r.data for r in expectations if r.data["expectation"] == "fps in range"]
    assert row["id"] in fps["examples"] and not fps["success"]
    assert [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"] == ["probe"]
