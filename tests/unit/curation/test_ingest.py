import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vmas.curation.ingest import SCHEMA, ingest
from vmas.curation.sources import youtube_id
from vmas.manifest import Manifest


@pytest.fixture
def cfg(demo_config, tmp_path):
    return demo_config.model_copy(update={"paths": demo_config.paths.model_copy(update={"artifacts_dir": tmp_path / "a"})})


def _files(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(f"video-{name}-{i}".encode())


def test_youtube_ids():
    assert youtube_id("https://www.youtube.com/watch?v=dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert youtube_id("https://youtu.be/dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert youtube_id("https://www.youtube.com/shorts/abcDEF12345") == "abcDEF12345"
    assert youtube_id("not a url") is None


def test_folder_ingest_is_idempotent_and_appends_new_files(cfg, tmp_path):
    raw = tmp_path / "raw"
    _files(raw / "sub", ["a.mp4", "b.MKV", "c.webm", "d.mov", "notes.txt"])
    root = tmp_path / "m"
    first = ingest(cfg, root, [raw], progress=False)
    assert first["new"] == 4
    again = ingest(cfg, root, [raw], progress=False)
    assert (again["new"], again["known"], again["batch"]) == (0, 4, None)
    (raw / "copy.mp4").write_bytes((raw / "sub" / "a.mp4").read_bytes())  # same bytes, other name
    _files(raw / "later", ["e.mp4"])
    third = ingest(cfg, root, [raw], batch="second", progress=False)
    assert (third["new"], third["duplicate"]) == (1, 1)
    rows = Manifest(root).read().to_pylist()
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5
    assert {r["batch"] for r in rows if r["path"].endswith("e.mp4")} == {"second"}


def test_path_manifest_csv(cfg, tmp_path):
    _files(tmp_path / "v", ["x.mp4", "y.mp4"])
    (tmp_path / "list.csv").write_text("path,label\nv/x.mp4,one\n" + f"{tmp_path / 'v' / 'y.mp4'},two\n")
    counts = ingest(cfg, tmp_path / "m", path_manifests=[str(tmp_path / "list.csv")], progress=False)
    assert counts["new"] == 2
    metas = sorted(json.loads(r["meta"])["label"] for r in Manifest(tmp_path / "m").iter_rows())
    assert metas == ["one", "two"]


def test_disco_rows_become_url_rows_with_typed_metadata_and_rejects_listed(cfg, tmp_path):
    embedding = [float(i) / 512 for i in range(512)]
    table = pa.Table.from_pylist([
        {"video_url_youtube": "https://www.youtube.com/watch?v=AAAAAAAAAAA", "video_duration_youtube_sec": 30.0,
         "track_id_spotify": "t1", "similarity_audio": 0.8, "audio_embedding_spotify": embedding, "other": 1},
        {"video_url_youtube": "https://www.youtube.com/watch?v=BBBBBBBBBBB", "video_duration_youtube_sec": 3.0,
         "track_id_spotify": "t2", "similarity_audio": 0.7, "audio_embedding_spotify": embedding, "other": 2},
        {"video_url_youtube": None, "video_duration_youtube_sec": 30.0, "track_id_spotify": "t3",
         "similarity_audio": 0.7, "audio_embedding_spotify": embedding, "other": 3},
        {"video_url_youtube": "https://youtu.be/AAAAAAAAAAA", "video_duration_youtube_sec": 30.0,
         "track_id_spotify": "t1", "similarity_audio": 0.8, "audio_embedding_spotify": embedding, "other": 4},
    ])
    pq.write_table(table, tmp_path / "disco.parquet")
    root = tmp_path / "a" / "manifests" / "ingest"
    counts = ingest(cfg, root, disco=[str(tmp_path / "disco.parquet")], progress=False)
    assert (counts["new"], counts["rejected"], counts["duplicate"]) == (1, 2, 1)
    (row,) = Manifest(root).read().to_pylist()
    assert row["id"] == "yt-AAAAAAAAAAA" and row["path"] is None and row["source"] == "disco"
    assert row["track_id"] == "t1" and abs(row["similarity_audio"] - 0.8) < 1e-6 and row["video_duration_s"] == 30.0
    assert Manifest(root, SCHEMA).read().schema.field("audio_embedding").type == pa.list_(pa.float32(), 512)
    assert row["audio_embedding"][:2] == [0.0, 1 / 512] and row["batch"] == counts["batch"]
    rejected = pq.read_table(tmp_path / "a" / "manifests" / "ingest.rejected").to_pylist()  # a file per batch
    assert sorted((r["row"], r["reason"].split(":")[0]) for r in rejected) == [(1, "duration"), (2, "no_url")]
    again = ingest(cfg, root, disco=[str(tmp_path / "disco.parquet")], progress=False)
    assert (again["new"], again["known"]) == (0, 1)


def test_laion_disco_layout_and_a_glob_of_shards(cfg, tmp_path):
    (tmp_path / "shards").mkdir()
    for shard in range(3):
        pq.write_table(pa.Table.from_pylist([
            {"song_id": f"s{shard:02d}{i:03d}abcde", "title": "a song", "artist_names": ["A", "B"], "duration": 200,
             "isrc": f"I{shard}{i}"} for i in range(5)]), tmp_path / "shards" / f"train-{shard:05d}.parquet")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"batch_rows": 2})})
    root = tmp_path / "m"
    counts = ingest(cfg, root, disco=[str(tmp_path / "shards" / "train-*.parquet")], progress=False)
    assert counts["new"] == 15 and len(counts["batches"]) == 9  # 3 files x (2 + 2 + 1 rows)
    rows = Manifest(root).read().to_pylist()
    assert {r["url"] for r in rows} >= {"https://www.youtube.com/watch?v=s00000abcde"}
    assert rows[0]["artist_name"] == "A, B" and rows[0]["video_title"] == "a song"
    assert sorted(Manifest(root).groups()) == sorted(counts["batches"])


def test_metadata_is_streamed_in_batches_of_rows(cfg, tmp_path, monkeypatch):
    """A table bigger than a batch is read a chunk at a time: no chunk holds more than batch_rows rows."""
    import vmas.curation.ingest as ingest_module

    n = 1000
    pq.write_table(pa.table({"video_url_youtube": [f"https://youtu.be/{i:011d}" for i in range(n)],
                             "video_duration_youtube_sec": [60.0] * n}), tmp_path / "big.parquet", row_group_size=300)
    seen = []
    real = ingest_module._metadata_rows
    monkeypatch.setattr(ingest_module, "_metadata_rows",
                        lambda cfg, chunk, *a: seen.append(chunk.rows.num_rows) or real(cfg, chunk, *a))
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"batch_rows": 128})})
    assert ingest(cfg, tmp_path / "m", disco=[str(tmp_path / "big.parquet")], progress=False)["new"] == n
    assert max(seen) == 128 and sum(seen) == n


def test_a_path_list_with_remote_uris_gives_url_rows(cfg, tmp_path):
    _files(tmp_path / "v", ["x.mp4"])
    (tmp_path / "list.csv").write_text("path,label\nv/x.mp4,one\nhttps://example.org/clips/y.mp4,two\n")
    counts = ingest(cfg, tmp_path / "m", path_manifests=[str(tmp_path / "list.csv")], progress=False)
    assert counts["new"] == 2
    rows = {json.loads(r["meta"])["label"]: r for r in Manifest(tmp_path / "m").iter_rows()}
    assert rows["one"]["path"].endswith("x.mp4") and rows["one"]["url"] is None
    assert rows["two"]["path"] is None and rows["two"]["url"] == "https://example.org/clips/y.mp4"
    assert rows["two"]["id"].startswith("url-")


def test_not_a_folder_is_a_clear_error(cfg, tmp_path):
    with pytest.raises(NotADirectoryError, match="nope: not a folder"):
        ingest(cfg, tmp_path / "m", [tmp_path / "nope"], progress=False)


def test_ingest_writes_parts_as_it_goes(cfg, tmp_path, monkeypatch):
    import vmas.curation.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "FLUSH_EVERY", 2)
    _files(tmp_path / "raw", [f"{i}.mp4" for i in range(5)])
    assert ingest(cfg, tmp_path / "m", [tmp_path / "raw"], progress=False)["new"] == 5
    batch = ingest_module.ingest(cfg, tmp_path / "m", [tmp_path / "raw"], progress=False)["batch"]
    assert batch is None  # nothing new the second time
    [group] = Manifest(tmp_path / "m").groups()
    assert len(Manifest(tmp_path / "m").group(group).parts()) == 3  # 2 + 2 + 1: a kill loses at most one part's work
