"""The shard stage and the shard reader: same data as the per-clip files, same batches, resumable,
served over HTTP, and corrupt shards named."""

import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vmas.curation.shard import shard
from vmas.data.shards import ShardError, iter_shard, read_shard_index
from vmas.data.tokens import DataSettings, TokenDataModule, decode_clip, read_index
from vmas.layout import manifest_dir, shard_url
from vmas.manifest import Manifest


def _with(cfg, section: str, **values):
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)})


def _batches(cfg, steps: int, workers: int = 0) -> list[dict]:
    data = TokenDataModule(DataSettings.from_config(_with(cfg, "train", num_workers=workers), steps))
    data.setup()
    return list(data.train_dataloader())


@pytest.fixture
def held_out(token_set):
    """The token set with a validation share: one of its 3 videos held out."""
    return _with(token_set, "train", val_share=0.3)


def test_shards_hold_the_per_clip_data_split_by_video(held_out):
    report = shard(held_out, progress=False)
    entries = read_shard_index(shard_url(held_out))
    assert report["shards"] == len(entries) == 2 and {e.split for e in entries} == {"train", "val"}
    rows = {r["id"]: r for r in read_index(manifest_dir(held_out, "tokenize"))}
    seen = {}
    for entry in entries:
        for sample in iter_shard(entry.url, entry.clips):
            got = decode_clip(sample, held_out.video.frames, held_out.video.size)
            seen[got["id"]] = entry.split
            want = decode_clip(rows[got["id"]], held_out.video.frames, held_out.video.size)
            assert all(torch.equal(got[k], want[k]) for k in ("codes", "beat_weights", "frames"))
            with open(rows[got["id"]]["video_path"], "rb") as f:
                assert sample["mp4"] == f.read()  # the training video's bytes, not re-encoded
    assert sorted(seen) == sorted(rows)
    val_videos = {rows[i]["video_id"] for i, split in seen.items() if split == "val"}
    train_videos = {rows[i]["video_id"] for i, split in seen.items() if split == "train"}
    assert len(val_videos) == 1 and not val_videos & train_videos


def test_one_clip_shards_and_files_give_identical_batches(token_set):
    cfg = _with(token_set, "shard", max_bytes=1)  # every clip closes its shard
    shard(cfg, progress=False)
    assert len(read_shard_index(shard_url(cfg))) == 6
    files = _batches(cfg, 5)
    shards = _batches(_with(cfg, "train", data="shards"), 5)
    assert len(files) == len(shards) == 5
    for a, b in zip(files, shards):
        assert a["id"] == b["id"]
        assert all(torch.equal(a[k], b[k]) for k in ("codes", "beat_weights", "frames"))


@pytest.mark.parametrize("max_bytes", [1, 30_000])  # 6 shards (split by shard), 3 shards (split by clip)
def test_two_ranks_and_two_workers_see_every_clip_once_per_epoch(token_set, max_bytes):
    from torch.utils.data import DataLoader

    from vmas.data.stream import slot_plan
    from vmas.data.tokens import ShardClips, TrainStream

    cfg = _with(token_set, "shard", max_bytes=max_bytes)
    shard(cfg, progress=False)
    source = ShardClips(read_shard_index(shard_url(cfg)))
    seen, batches = [], []
    for rank in range(2):
        stream = TrainStream(source, cfg.video.frames, cfg.video.size, batch_size=1, batches=8, seed=5, buffer=2,
                             rank=rank, world=2)
        ids = [b["id"][0] for b in DataLoader(stream, batch_size=1, num_workers=2)]
        batches.append(len(ids))
        for worker in range(2):  # batch k came from worker k % 2; its first epoch is its plan's length
            epoch = slot_plan(source.counts, 5, 0, 2 * rank + worker, 4).length
            seen += ids[worker::2][:epoch]
    assert batches == [8, 8]  # every rank the same number of batches
    assert sorted(seen) == sorted(r["id"] for r in read_index(manifest_dir(cfg, "tokenize")))


def test_a_rerun_skips_finished_shards_and_a_changed_clip_reshards(token_set):
    cfg = _with(token_set, "shard", max_bytes=30_000)
    first = shard(cfg, progress=False)
    assert first["written"] == first["shards"] and first["kept"] == 0
    entries = read_shard_index(shard_url(cfg))
    mtimes = {e.url: os.stat(e.url).st_mtime_ns for e in entries}
    again = shard(cfg, progress=False)
    assert again["written"] == 0 and again["kept"] == first["shards"] and again["removed"] == 0
    assert {e.url: os.stat(e.url).st_mtime_ns for e in read_shard_index(shard_url(cfg))} == mtimes
    # a clip re-tokenized (another codec, say): its key changes, so its batch is sharded again
    tokens = Manifest(manifest_dir(cfg, "tokenize"))
    row = next(r for r in tokens.iter_rows() if r["id"] == "video1/0000")
    tokens.append([{**row, "key": "changed"}])
    third = shard(cfg, progress=False)
    assert third["written"] >= 1 and third["clips"] == 6
    assert Manifest(manifest_dir(cfg, "shard")).read().num_rows == third["shards"]
    # the superseded files went once the new index was written; nothing else is left beside the listed ones
    listed = {e.url for e in read_shard_index(shard_url(cfg))}
    on_disk = {str(p) for p in Path(shard_url(cfg)).rglob("*.tar")}
    assert on_disk == listed and third["removed"] >= 1


def test_a_killed_run_keeps_the_shards_it_finished(token_set, monkeypatch):
    import vmas.curation.shard as stage

    cfg = _with(token_set, "shard", max_bytes=30_000)
    real, calls = stage._write_shard, []

    def dies_on_the_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "_write_shard", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        shard(cfg, progress=False)
    monkeypatch.setattr(stage, "_write_shard", real)
    report = shard(cfg, progress=False)
    assert report["kept"] == 1 and report["written"] == report["shards"] - 1
    assert not [p for p in (manifest_dir(cfg, "shard").parent.parent / "shard").rglob(".*")]  # no temp left


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (stopped at the end)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_training_reads_shards_served_over_http(token_set, served):
    import shutil

    from vmas.training.train import train

    root, url = served
    cfg = _with(token_set, "shard", max_bytes=30_000)
    shard(cfg, progress=False)
    shutil.copytree(shard_url(cfg), root / "shards")
    remote = _with(cfg, "train", data="shards", shards=f"{url}/shards", max_steps=3, checkpoint_every_n_steps=3)
    local = _with(cfg, "train", data="shards", max_steps=3)
    assert [b["id"] for b in _batches(remote, 3)] == [b["id"] for b in _batches(local, 3)]
    report = train(remote, progress=False)
    assert report["steps"] == 3 and report["data"] == "shards" and report["train_clips"] == 6


def test_a_truncated_shard_is_named_and_the_policy_decides(token_set, caplog):
    cfg = _with(token_set, "shard", max_bytes=30_000)
    shard(cfg, progress=False)
    entries = read_shard_index(shard_url(cfg))
    broken = entries[0]
    with open(broken.url, "r+b") as f:
        f.truncate(broken.bytes // 2)
    with pytest.raises(ShardError, match=f"shard {broken.url}"):
        list(iter_shard(broken.url, broken.clips))
    failing = _with(cfg, "train", data="shards", batch_size=1)
    with pytest.raises(ShardError, match="truncated or corrupt"):
        _batches(failing, 6)
    skipping = _with(failing, "train", corrupt_shards="skip")
    with caplog.at_level("WARNING"):
        batches = _batches(skipping, 6)
    assert len(batches) == 6  # the other shards fill the steps
    assert any(broken.url in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)


def test_garbage_instead_of_a_shard_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ShardError, match=f"shard {bad}"):
        list(iter_shard(str(bad)))
    with pytest.raises(FileNotFoundError, match="no shard index"):
        read_shard_index(str(tmp_path))


def test_the_index_names_every_shard_relative_to_its_root(token_set):
    cfg = _with(token_set, "shard", max_bytes=30_000)
    shard(cfg, progress=False)
    table = pq.read_table(f"{shard_url(cfg)}/index.parquet")
    assert all(not p.startswith("/") and p.endswith(".tar") for p in table.column("path").to_pylist())
    assert sum(table.column("clips").to_pylist()) == 6
    for row in table.to_pylist():  # a shard stays under shard.max_bytes, on disk, unless it is one clip
        assert row["bytes"] == os.path.getsize(f"{shard_url(cfg)}/{row['path']}")
        assert row["bytes"] <= 30_000 or row["clips"] == 1
