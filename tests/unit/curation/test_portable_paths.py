"""Manifest paths relative to the data folder: how they are written and read back, how a file whose time
changed is still known (read once), old manifests with absolute paths, and the row stages reading them."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vmas.curation import batches
from vmas.curation.batches import (RegisteredFiles, rehashed_path, resolve_path, stored_path,
                                   unregistered_files)
from vmas.curation.download import download_video
from vmas.curation.ingest import ingest
from vmas.curation.probe import probe_video
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.media import write_mp4


def _video(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    write_mp4(path, [np.full((32, 32, 3), shade + i, np.uint8) for i in range(10)], 10,
              audio=np.sin(2 * np.pi * 220 * t)[None] * 0.1, sample_rate=16000)


def _cfg(demo_config, project: Path, data_dir: Path | None = None):
    paths = demo_config.paths.model_copy(update={"data_dir": data_dir or project / "data",
                                                 "artifacts_dir": project / "artifacts"})
    return demo_config.model_copy(update={"paths": paths})


@pytest.fixture
def project(tmp_path):
    for i, name in enumerate(["a/x.mp4", "a/y.mp4", "z.mp4"]):
        _video(tmp_path / "project" / "data" / name, 70 * i)
    return tmp_path / "project"


@pytest.fixture
def hashes(monkeypatch):
    """The files the sensor's scan reads (the real hash, counted)."""
    read = []

    def counted(path):
        read.append(Path(path).name)
        return real(path)

    real = batches.file_sha256
    monkeypatch.setattr(batches, "file_sha256", counted)
    return read


def test_stored_and_resolved_paths(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "v.mp4").write_bytes(b"v")
    (tmp_path / "outside.mp4").write_bytes(b"o")
    (data / "link.mp4").symlink_to(tmp_path / "outside.mp4")  # a DVC symlink cache, say
    assert stored_path(data / "sub" / "v.mp4", data) == "sub/v.mp4"
    assert stored_path(data / "sub" / ".." / "sub" / "v.mp4", data) == "sub/v.mp4"
    assert stored_path(data / "link.mp4", data) == "link.mp4"  # where the link is, not what it points to
    assert stored_path(tmp_path / "outside.mp4", data) == str(tmp_path / "outside.mp4")
    monkeypatch.chdir(tmp_path)
    assert stored_path(Path("data/sub/v.mp4"), Path("data")) == "sub/v.mp4"  # relative settings, from the root

    assert resolve_path("sub/v.mp4", data) == data / "sub" / "v.mp4"
    assert resolve_path("sub/v.mp4", "data") == data / "sub" / "v.mp4"
    assert resolve_path(str(tmp_path / "outside.mp4"), data) == tmp_path / "outside.mp4"
    assert resolve_path("outside.mp4", data) == tmp_path / "outside.mp4"  # an old cwd-relative row (download's)
    assert resolve_path("nowhere.mp4", data) == data / "nowhere.mp4"  # a missing file is missing in the data folder
    assert resolve_path("sub/v.mp4", None) == Path("sub/v.mp4")


def test_a_copied_project_knows_its_files_and_a_changed_time_is_read_once(demo_config, project, tmp_path, hashes):
    cfg = _cfg(demo_config, project)
    root = manifest_dir(cfg, "ingest")
    assert ingest(cfg, root, [cfg.paths.data_dir], batch="first", progress=False)["new"] == 3
    assert sorted(r["path"] for r in Manifest(root).iter_rows(["path"])) == ["a/x.mp4", "a/y.mp4", "z.mp4"]

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)  # times kept
    moved = _cfg(demo_config, copy)
    assert unregistered_files(moved, manifest_dir(moved, "ingest")) == [] and hashes == []

    os.utime(copy / "data" / "a" / "x.mp4", ns=(1, 10**18))  # touched: `cp` without -p, a `dvc checkout`
    (copy / "data" / "b").mkdir()
    shutil.copy(copy / "data" / "z.mp4", copy / "data" / "b" / "z.mp4")  # same name and bytes, another place
    new = unregistered_files(moved, manifest_dir(moved, "ingest"))
    assert [p.relative_to(copy / "data").as_posix() for p in new] == ["b/z.mp4"]  # a duplicate: ingest's to say
    assert hashes == ["x.mp4"]  # read to check its bytes
    assert rehashed_path(manifest_dir(moved, "ingest")).is_file()
    assert unregistered_files(moved, manifest_dir(moved, "ingest")) == new and hashes == ["x.mp4"]  # not again
    counts = ingest(moved, manifest_dir(moved, "ingest"), [moved.paths.data_dir], progress=False)
    assert (counts["new"], counts["known"], counts["duplicate"]) == (0, 3, 1)

    os.utime(copy / "data" / "a" / "y.mp4", ns=(1, 10**18))
    (copy / "data" / "a" / "y.mp4").write_bytes(b"other bytes")  # a different file under the same name
    assert [p.name for p in unregistered_files(moved, manifest_dir(moved, "ingest"))] == ["y.mp4", "z.mp4"]


def test_an_old_manifest_with_absolute_paths_keeps_working_when_moved(demo_config, project, tmp_path, hashes):
    before = _cfg(demo_config, project, data_dir=tmp_path / "elsewhere")  # stored absolute, as before
    ingest(before, manifest_dir(before, "ingest"), [project / "data"], batch="old", progress=False)
    assert all(Path(r["path"]).is_absolute() for r in Manifest(manifest_dir(before, "ingest")).iter_rows(["path"]))
    cfg = _cfg(demo_config, project)
    assert unregistered_files(cfg, manifest_dir(cfg, "ingest")) == [] and hashes == []  # read as they are

    shutil.copytree(project, tmp_path / "moved")
    shutil.rmtree(project)
    moved = _cfg(demo_config, tmp_path / "moved")
    assert unregistered_files(moved, manifest_dir(moved, "ingest")) == []
    assert sorted(hashes) == ["x.mp4", "y.mp4", "z.mp4"]  # the old paths name another folder: read once
    assert unregistered_files(moved, manifest_dir(moved, "ingest")) == [] and len(hashes) == 3
    counts = ingest(moved, manifest_dir(moved, "ingest"), [moved.paths.data_dir], progress=False)
    assert (counts["new"], counts["known"]) == (0, 3)
    files = RegisteredFiles(Manifest(manifest_dir(moved, "ingest")), moved.paths.data_dir)
    assert files.stored(moved.paths.data_dir / "a" / "x.mp4") == "a/x.mp4"


def test_row_stages_read_relative_paths_in_the_current_data_folder(demo_config, project, tmp_path):
    cfg = _cfg(demo_config, project)
    ingest(cfg, manifest_dir(cfg, "ingest"), [cfg.paths.data_dir], batch="first", progress=False)
    for name in ("download", "probe"):
        assert run_stage(name, cfg, progress=False).errors == 0
    assert {r["path"] for r in Manifest(manifest_dir(cfg, "download")).iter_rows(["path"])} == {
        "a/x.mp4", "a/y.mp4", "z.mp4"}  # as ingest wrote them

    shutil.copytree(project, tmp_path / "moved")
    shutil.rmtree(project)
    moved = _cfg(demo_config, tmp_path / "moved")
    shutil.rmtree(manifest_dir(moved, "probe"))  # probe again, from download's relative paths
    download = run_stage("download", moved, progress=False)  # its out_dir (keyed) moved: done again, locally
    probe = run_stage("probe", moved, progress=False)
    assert (download.processed, download.errors, probe.processed, probe.errors) == (3, 0, 3, 0)
    rows = list(Manifest(manifest_dir(moved, "probe")).iter_rows(["path", "duration_s"]))
    assert sorted(r["path"] for r in rows) == [str(tmp_path / "moved" / "data" / p) for p in
                                               ("a/x.mp4", "a/y.mp4", "z.mp4")]  # absolute, for the later stages

    data_dir = str(moved.paths.data_dir)
    [out] = download_video({"id": "v", "path": "a/x.mp4", "url": None}, {"data_dir": data_dir})
    assert (out["status"], out["path"]) == ("local", "a/x.mp4")
    [probed] = probe_video({"id": "v", "path": "a/x.mp4"}, {"data_dir": data_dir})
    assert probed["path"] == str(moved.paths.data_dir / "a" / "x.mp4") and probed["duration_s"] > 0
