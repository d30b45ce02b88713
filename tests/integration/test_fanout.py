"""Curation fanned out the way a cluster runs it, on this machine: a path list ingested as three
batches, a `dagster job backfill` of the `curate` job over the three partitions, a real
`dagster-daemon` whose queued run coordinator runs them concurrently (each run in its own process,
its steps in the multiprocess executor), all writing the same manifests. Afterwards no row is lost
or duplicated, each batch wrote only its own folder, and every asset check passed."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from vmas.config import load_config

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
BATCHES = 3
RUNS_AT_ONCE = 3
TIMEOUT_S = 1500


def _overlap(records) -> int:
    """The most runs that were running at the same moment."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.fixture(scope="module")
def fanned_out(tiny_set, tiny_pipeline, tmp_path_factory, repo):
    from vmas.curation.ingest import ingest
    from vmas.layout import manifest_dir

    root = tmp_path_factory.mktemp("fanout")
    videos = sorted(tiny_set.glob("*.mp4"))[: 2 * BATCHES]
    (root / "data").mkdir()  # nothing for the ingest asset to find: the batches come from the list
    (root / "videos.csv").write_text("path\n" + "".join(f"{v}\n" for v in videos))
    # the shipped demo codec (tokenize runs in the partitions; train_codec is not part of `curate`)
    overrides = [o for o in tiny_pipeline if not o.startswith("codec.pretrained")]
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[
        f"paths.data_dir={root / 'data'}", f"paths.artifacts_dir={root / 'artifacts'}", "ingest.batch_rows=2",
        *overrides])
    (root / "config.yaml").write_text(cfg.to_yaml())
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), path_manifests=[str(root / "videos.csv")], progress=False)
    assert counts["new"] == len(videos) and len(counts["batches"]) == BATCHES

    home = root / ".dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        f"  config:\n    max_concurrent_runs: {RUNS_AT_ONCE}\n    dequeue_interval_seconds: 1\n")
    (root / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: orchestration.definitions\n"
        f"      working_directory: {repo}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "VMAS_CONFIG": str(root / "config.yaml"), "VMAS_WORKERS": "1",
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    env.pop("VMAS_EXECUTOR", None)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("ingest_batches", counts["batches"])

    log = open(root / "daemon.log", "w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")], env=env,
                              cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        backfill = subprocess.run([str(BIN / "dagster"), "job", "backfill", "-w", str(root / "workspace.yaml"), "-j",
                                   "curate", "--partitions", ",".join(counts["batches"]), "--noprompt"], env=env,
                                  cwd=root, capture_output=True, text=True, timeout=600)
        assert backfill.returncode == 0, backfill.stdout[-2000:] + backfill.stderr[-3000:]
        deadline = time.monotonic() + TIMEOUT_S
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                records = instance.get_run_records()
                done = [r for r in records if r.dagster_run.is_finished]
                if len(records) >= BATCHES and len(done) == len(records):
                    break
                assert time.monotonic() < deadline, ([r.dagster_run.status for r in records],
                                                     (root / "daemon.log").read_text()[-3000:])
                time.sleep(2)
            events = {r.dagster_run.run_id: instance.all_logs(r.dagster_run.run_id) for r in records}
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)  # the daemon and the code server it started, by their group
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
    return {"root": root, "cfg": cfg, "batches": counts["batches"], "records": records, "events": events,
            "videos": videos}


def test_the_partitions_ran_at_once_and_each_succeeded(fanned_out):
    records = fanned_out["records"]
    assert len(records) == BATCHES
    failures = {r.dagster_run.tags.get("dagster/partition"): r.dagster_run.status.value for r in records
                if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS}
    assert not failures, (failures, (fanned_out["root"] / "daemon.log").read_text()[-3000:])
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == sorted(fanned_out["batches"])
    assert _overlap(records) >= 2  # the queued coordinator let them run together


def test_every_check_of_every_partition_passed(fanned_out):
    from orchestration.assets.curation import BATCH_ASSETS
    from vmas.quality.suites import SUITES

    for run_id, events in fanned_out["events"].items():
        checks = [e.dagster_event.event_specific_data for e in events if e.dagster_event is not None
                  and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        assert sorted(c.asset_key.to_user_string() for c in checks) == sorted(n for n in BATCH_ASSETS if n in SUITES)
        assert all(c.passed for c in checks), [(c.asset_key, c.metadata) for c in checks if not c.passed]


def test_no_row_is_lost_or_duplicated_and_each_batch_wrote_only_its_own_folder(fanned_out):
    from orchestration.assets.curation import BATCH_ASSETS
    from vmas.curation import STAGES
    from vmas.curation.batches import video_id
    from vmas.layout import manifest_dir
    from vmas.manifest import ERROR, ID, INPUT_ID, ROOT_GROUP, Manifest

    cfg, batches = fanned_out["cfg"], fanned_out["batches"]
    ingest = Manifest(manifest_dir(cfg, "ingest"))
    by_batch = {b: {r[ID] for r in ingest.group(b).iter_rows([ID])} for b in batches}
    assert sum(len(v) for v in by_batch.values()) == len(fanned_out["videos"])
    for name in BATCH_ASSETS[1:]:
        stage = STAGES[name]
        manifest = Manifest(manifest_dir(cfg, name), stage.schema)
        upstream = Manifest(manifest_dir(cfg, stage.upstream))
        assert sorted(manifest.groups()) == sorted(batches) and ROOT_GROUP not in manifest.groups(), name
        ids = [r[ID] for r in manifest.iter_rows([ID])]
        assert len(ids) == len(set(ids)), f"{name}: duplicated rows"
        for batch in batches:
            rows = list(manifest.group(batch).iter_rows())
            assert {video_id(r) for r in rows} <= by_batch[batch], f"{name}/{batch}: another batch's rows"
            accepted = {r[ID] for r in upstream.group(batch).iter_rows() if stage.accepts(r)}
            assert {r[INPUT_ID] for r in rows} == accepted, f"{name}/{batch}: rows lost"
            assert all(r[ERROR] is None or ":" in r[ERROR] for r in rows)
