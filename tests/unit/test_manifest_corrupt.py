"""A damaged manifest part (empty, truncated, corrupt): one line naming the part, the stage and the fix,
and the fix works (after deleting the part the stage redoes exactly the rows it held)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vmas.errors import ManifestError, StageError
from vmas.manifest import Manifest, schema_with

SCHEMA = schema_with(pa.field("value", pa.int64()))
VMAS = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")


def _rows(ids, value=1):
    return [{"id": i, "input_id": i, "key": "k", "error": None, "value": value} for i in ids]


def _damage(part: Path, how: str) -> None:
    data = part.read_bytes()
    if how == "empty":
        part.write_bytes(b"")
    elif how == "truncated":  # a copy cut short: the footer is gone
        part.write_bytes(data[: len(data) // 2])
    else:  # "corrupt": the footer is intact, the input_id column's pages (every read needs them) are not
        import pyarrow.parquet as pq

        chunk = pq.ParquetFile(part).metadata.row_group(0).column(SCHEMA.names.index("input_id"))
        start = (chunk.dictionary_page_offset or chunk.data_page_offset) + 16
        body = bytearray(data)
        body[start:start + 64] = b"\xff" * 64
        part.write_bytes(bytes(body))


@pytest.mark.parametrize("how", ["empty", "truncated", "corrupt"])
def test_reading_a_damaged_part_names_the_part_the_stage_and_the_fix(tmp_path, how):
    manifest = Manifest(tmp_path / "manifests" / "probe", SCHEMA)
    manifest.group("b1").append(_rows([f"v{i}" for i in range(300)]))
    bad = manifest.group("b2").append(_rows([f"w{i}" for i in range(300)]))
    _damage(bad, how)

    for read in (lambda: manifest.read(), lambda: manifest.group("b2").done_keys(), lambda: list(manifest.iter_rows())):
        with pytest.raises(ManifestError) as caught:
            read()
        message = str(caught.value)
        assert "\n" not in message
        assert str(bad) in message and "probe manifest" in message and "`vmas probe`" in message
        assert message.endswith(f"rm {shlex.quote(str(bad))}")
        assert isinstance(caught.value, StageError)  # the CLI prints StageErrors as one line
        assert (caught.value.path, caught.value.stage) == (str(bad), "probe")
    assert len(Manifest(manifest.root, SCHEMA).group("b1").read()) == 300  # the other batch still reads


def test_compacting_without_a_schema_names_a_damaged_last_part(tmp_path):
    group = Manifest(tmp_path / "clip").group("b")
    group.append(pa.Table.from_pylist(_rows(["a"]), schema=SCHEMA))
    bad = group.append(pa.Table.from_pylist(_rows(["b"]), schema=SCHEMA))
    _damage(bad, "empty")
    with pytest.raises(ManifestError, match=r"unreadable part of the clip manifest \(Parquet file size is 0 bytes\)"):
        group.compact()


def test_a_manifest_error_survives_pickling(tmp_path):
    """Raised in a worker process (a Dagster step, a pool), it must reach the parent intact."""
    import pickle

    err = ManifestError(str(tmp_path / "p.parquet"), "beats", "bad footer")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.stage == "beats"


def _videos(folder: Path, n: int, seed: int) -> None:
    """``n`` distinct 1 s clips with sound (probe wants both streams)."""
    from vmas.media import write_mp4

    folder.mkdir(parents=True)
    sr = 16000
    for i in range(n):
        frames = [np.full((32, 32, 3), (seed * 50 + i * 20 + f) % 255, np.uint8) for f in range(10)]
        tone = 0.2 * np.sin(2 * np.pi * (220 + 40 * i + 300 * seed) * np.arange(sr) / sr, dtype=np.float32)[None]
        write_mp4(folder / f"v{seed}-{i}.mp4", frames, 10, audio=tone, sample_rate=sr)


def _vmas(repo: Path, artifacts: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VMAS, *args, "--config", str(repo / "configs" / "demo.yaml"),
                           "--set", f"paths.artifacts_dir={artifacts}"], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=240)


@pytest.mark.slow
def test_cli_prints_one_line_and_deleting_the_part_redoes_its_rows(tmp_path, repo):
    """`vmas probe` and `vmas check probe` on a manifest with a truncated part: exit 2 with one line
    (the part, the stage, ``rm <part>``). Running that ``rm`` and then `vmas probe` redoes exactly the
    rows of that part (its batch) and skips the other batch."""
    artifacts = tmp_path / "artifacts"
    _videos(tmp_path / "raw" / "a", 3, 0)
    _videos(tmp_path / "raw" / "b", 2, 1)
    for batch in ("a", "b"):
        result = _vmas(repo, artifacts, "ingest", str(tmp_path / "raw" / batch), "--batch", batch, "--no-progress")
        assert result.returncode == 0, result.stderr
    assert _vmas(repo, artifacts, "download", "--no-progress").returncode == 0  # local files: passed through
    first = _vmas(repo, artifacts, "probe", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["rows"] == 5

    probe = Manifest(artifacts / "manifests" / "probe")
    [bad] = probe.group("a").parts()
    _damage(bad, "truncated")
    for command in (["probe", "--no-progress", "--workers", "2"], ["check", "probe"]):
        result = _vmas(repo, artifacts, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "pyarrow" not in result.stderr, result.stderr
        [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert str(bad) in line and "probe manifest" in line and "`vmas probe`" in line, line
        assert not [ln for ln in result.stderr.splitlines() if ln.startswith(" ")], result.stderr  # no frames

    fix = shlex.split(line.split(": rm ", 1)[1])  # the advice, as printed
    assert fix == [str(bad)]
    Path(fix[0]).unlink()
    again = _vmas(repo, artifacts, "probe", "--no-progress")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["processed"], report["skipped"], report["rows"], report["errors"]) == (3, 2, 5, 0)
    assert len(probe.group("a").read()) == 3
    checked = _vmas(repo, artifacts, "check", "probe")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_damaged_upstream_part_names_the_upstream_stage(tmp_path, demo_config):
    """The runner reads the upstream manifest too: its damaged part names that stage (ingest), not the one run."""
    from vmas.curation.ingest import SCHEMA as INGEST
    from vmas.curation.runner import run_stage
    from vmas.layout import manifest_dir

    cfg = demo_config.model_copy(update={"paths": demo_config.paths.model_copy(
        update={"artifacts_dir": tmp_path / "artifacts"})})
    ingest = Manifest(manifest_dir(cfg, "ingest"), INGEST)
    bad = ingest.group("b").append([{"id": "x", "input_id": "x", "key": "k", "error": None, "path": "/nowhere.mp4"}])
    _damage(bad, "truncated")
    with pytest.raises(ManifestError, match=r"unreadable part of the ingest manifest .*`vmas ingest`"):
        run_stage("download", cfg, progress=False)
