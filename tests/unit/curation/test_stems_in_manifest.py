"""Reference stems travel in the manifests: ingest records the stems beside a video (or those a path
list names), probe carries them on, and remove_vocals reads them from its input row."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vmas.curation import ingest as ingest_stage
from vmas.curation.ingest import ingest
from vmas.curation.remove_vocals import reference_stems
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.media import write_mp4, write_wav

SR = 16000
STEMS = ("reference_instrumental_path", "reference_vocals_path")


@pytest.fixture
def cfg(demo_config, tmp_path):
    paths = demo_config.paths.model_copy(update={"data_dir": tmp_path / "data", "artifacts_dir": tmp_path / "a"})
    return demo_config.model_copy(update={"paths": paths})


def _video(path, shade: int, stems_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """A one-second video whose sound is music + vocals; with ``stems_dir``, the two stems written there
    as ``<name>.instrumental.wav`` and ``<name>.vocals.wav``."""
    t = np.arange(SR) / SR
    music, vocals = 0.1 * np.sin(2 * np.pi * 220 * t), 0.05 * np.sin(2 * np.pi * 660 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, [np.full((32, 32, 3), shade + i, np.uint8) for i in range(10)], 10,
              audio=(music + vocals)[None], sample_rate=SR)
    if stems_dir is not None:
        stems_dir.mkdir(parents=True, exist_ok=True)
        write_wav(stems_dir / f"{path.stem}.instrumental.wav", music, SR)
        write_wav(stems_dir / f"{path.stem}.vocals.wav", vocals, SR)
    return music, vocals


def test_stems_beside_a_video_reach_the_manifests_and_none_give_nulls(cfg):
    data = cfg.paths.data_dir
    _video(data / "with.mp4", 0, stems_dir=data)
    _video(data / "without.mp4", 100)
    ingest(cfg, manifest_dir(cfg, "ingest"), [data], progress=False)
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in Manifest(manifest_dir(cfg, "ingest")).read().to_pylist()}
    assert set(rows) == {"with.mp4", "without.mp4"}  # the stems are not registered as videos
    with_, without = rows["with.mp4"], rows["without.mp4"]
    assert with_["reference_instrumental_path"] == str((data / "with.instrumental.wav").resolve())
    assert with_["reference_vocals_path"] == str((data / "with.vocals.wav").resolve())
    assert without["reference_instrumental_path"] is None and without["reference_vocals_path"] is None
    # a video without stems keeps the key it had before stems were recorded; one with them gets its own
    assert without["key"] == without["id"] and with_["key"] != with_["id"]

    run_stage("download", cfg, progress=False)
    run_stage("probe", cfg, progress=False)
    probed = {r["id"]: r for r in Manifest(manifest_dir(cfg, "probe")).read().to_pylist()}
    for row in rows.values():
        assert {c: probed[row["id"]][c] for c in STEMS} == {c: row[c] for c in STEMS}

    reference, has_vocals = reference_stems(probed[with_["id"]], SR)  # what remove_vocals scores against
    assert reference is not None and len(reference) == SR and has_vocals is True
    assert reference_stems(probed[without["id"]], SR) == (None, None)


def test_a_path_list_names_stems_explicitly(cfg, tmp_path):
    _video(tmp_path / "v" / "x.mp4", 0, stems_dir=tmp_path / "stems")
    (tmp_path / "list.csv").write_text("path,instrumental_path,vocals_path,label\n"
                                       "v/x.mp4,stems/x.instrumental.wav,stems/x.vocals.wav,one\n")
    ingest(cfg, tmp_path / "m", path_manifests=[str(tmp_path / "list.csv")], progress=False)
    (row,) = Manifest(tmp_path / "m").read().to_pylist()
    assert row["reference_instrumental_path"] == str((tmp_path / "stems" / "x.instrumental.wav").resolve())
    assert row["reference_vocals_path"] == str((tmp_path / "stems" / "x.vocals.wav").resolve())
    assert json.loads(row["meta"]) == {"label": "one"}  # the stems are columns, not metadata


def test_a_manifest_written_before_the_stem_columns_still_reads_and_compacts(tmp_path):
    old = pa.schema([f for f in ingest_stage.SCHEMA if f.name not in STEMS and f.name != "audio_embedding"])
    root = tmp_path / "m"
    root.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "a", "input_id": "a", "key": "a", "path": "/a.mp4"}], schema=old),
                   root / "part-000000.parquet")
    manifest = Manifest(root, ingest_stage.SCHEMA)
    manifest.append([{"id": "b", "input_id": "b", "key": "kb", "path": "/b.mp4",
                      "reference_instrumental_path": "/b.instrumental.wav"}])
    assert manifest.read().schema == ingest_stage.SCHEMA
    manifest.compact(keep_inputs=["a", "b"])
    rows = {r["id"]: r for r in manifest.read().to_pylist()}
    assert rows["a"]["reference_instrumental_path"] is None
    assert rows["b"]["reference_instrumental_path"] == "/b.instrumental.wav"
