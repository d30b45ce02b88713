import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vmas.curation.ingest import ingest
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


def test_disco_metadata_present_and_missing(cfg, tmp_path):
    media = tmp_path / "media"
    _files(media, ["AAAAAAAAAAA.mp4"])
    table = pa.Table.from_pylist([
        {"video_url_youtube": "https://www.youtube.com/watch?v=AAAAAAAAAAA", "video_duration_youtube_sec": 30.0,
         "track_id_spotify": "t1", "similarity_audio": 0.8},
        {"video_url_youtube": "https://www.youtube.com/watch?v=BBBBBBBBBBB", "video_duration_youtube_sec": 12.0,
         "track_id_spotify": "t2", "similarity_audio": 0.7},
    ])
    pq.write_table(table, tmp_path / "disco.parquet")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"media_root": media})})
    counts = ingest(cfg, tmp_path / "a" / "manifests" / "ingest", disco=[str(tmp_path / "disco.parquet")],
                    progress=False)
    assert (counts["new"], counts["missing"]) == (1, 1)
    (row,) = Manifest(tmp_path / "a" / "manifests" / "ingest").read().to_pylist()
    assert row["source"] == "disco" and json.loads(row["meta"])["track_id_spotify"] == "t1"
    missing = pq.read_table(tmp_path / "a" / "manifests" / "ingest.missing.parquet").to_pylist()
    assert missing[0]["youtube_id"] == "BBBBBBBBBBB" and "BBBBBBBBBBB" in missing[0]["reason"]


def test_not_a_folder_is_a_clear_error(cfg, tmp_path):
    with pytest.raises(NotADirectoryError, match="nope: not a folder"):
        ingest(cfg, tmp_path / "m", [tmp_path / "nope"], progress=False)


def test_ingest_writes_parts_as_it_goes(cfg, tmp_path, monkeypatch):
    import vmas.curation.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "FLUSH_EVERY", 2)
    _files(tmp_path / "raw", [f"{i}.mp4" for i in range(5)])
    assert ingest(cfg, tmp_path / "m", [tmp_path / "raw"], progress=False)["new"] == 5
    assert len(Manifest(tmp_path / "m").parts()) == 3  # 2 + 2 + 1: a kill loses at most one part's work
