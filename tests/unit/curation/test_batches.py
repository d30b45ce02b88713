"""Ingest batches (the Dagster partitions): what is new under the data folder, how a batch is named,
and a stage run restricted to one batch that leaves the others alone."""

import numpy as np
import pytest

from vmas.curation.batches import batch_name, batch_video_ids, batches, unregistered_files
from vmas.curation.ingest import ingest
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.media import write_mp4


@pytest.fixture
def cfg(demo_config, tmp_path):
    paths = demo_config.paths.model_copy(update={"data_dir": tmp_path / "data", "artifacts_dir": tmp_path / "a"})
    return demo_config.model_copy(update={"paths": paths})


def _video(path, shade: int) -> None:
    t = np.arange(16000) / 16000
    write_mp4(path, [np.full((32, 32, 3), shade + i, np.uint8) for i in range(10)], 10,
              audio=np.sin(2 * np.pi * 220 * t)[None] * 0.1, sample_rate=16000)


def test_new_files_become_batches_and_a_stage_runs_one_batch_only(cfg):
    data = cfg.paths.data_dir
    data.mkdir()
    for i in range(3):
        _video(data / f"v{i}.mp4", 40 * i)
    (data / "notes.txt").write_text("not a video")
    ingest_root = manifest_dir(cfg, "ingest")
    new = unregistered_files(cfg, ingest_root)
    assert [p.name for p in new] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert batch_name(reversed(new)) == batch_name(new) != batch_name(new[:2])  # named by the files, not the order
    ingest(cfg, ingest_root, [data], batch="first", progress=False)
    assert unregistered_files(cfg, ingest_root) == []
    _video(data / "v3.mp4", 200)
    assert [p.name for p in unregistered_files(cfg, ingest_root)] == ["v3.mp4"]
    ingest(cfg, ingest_root, [data], batch="second", progress=False)
    assert batches(ingest_root) == ["first", "second"] and len(batch_video_ids(ingest_root, "second")) == 1

    for batch in ("second", "first"):  # local files: download passes them through
        assert run_stage("download", cfg, progress=False, batch=batch).errors == 0
    later = run_stage("probe", cfg, progress=False, batch="second")
    assert (later.processed, later.rows, later.errors) == (1, 1, 0)
    earlier = run_stage("probe", cfg, progress=False, batch="first")
    assert (earlier.processed, earlier.rows) == (3, 3)
    rows = Manifest(manifest_dir(cfg, "probe")).read().to_pylist()
    assert len(rows) == 4  # the second batch's row survived the first batch's run
    whole = run_stage("probe", cfg, progress=False)
    assert (whole.processed, whole.skipped, whole.rows) == (0, 4, 4)
