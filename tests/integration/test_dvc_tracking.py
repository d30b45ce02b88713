"""data/ is versioned by DVC with a local default remote that works with no network."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vmas.config import load_config
from vmas.synth import synthesize_dataset

pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).parent / "dvc")


def dvc(*args, cwd):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"dvc {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def test_repo_tracks_data_with_a_local_default_remote(repo):
    remote = dvc("config", "core.remote", cwd=repo).strip()
    resolved = Path(dvc("config", "--project", f"remote.{remote}.url", cwd=repo).strip())
    assert resolved == repo / ".dvc-storage"  # a folder of the clone itself: no network, no setup
    assert "url = ../.dvc-storage" in (repo / ".dvc" / "config").read_text()  # relative, so any clone works
    outs = yaml.safe_load((repo / "data.dvc").read_text())["outs"]
    assert [o["path"] for o in outs] == [str(load_config(repo / "params.yaml").paths.data_dir)]


def test_push_then_pull_restores_the_same_bytes(repo, tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc("init", "-q", cwd=tmp_path)
    shutil.copy(repo / ".dvc" / "config", tmp_path / ".dvc" / "config")  # the repo's remote settings
    cfg = load_config(repo / "configs" / "demo.yaml",
                      overrides=["synth.n=2", "synth.max_duration_s=6", "synth.short_side=64"])
    synthesize_dataset(cfg.synth, tmp_path / "data", progress=False)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "data").iterdir()}
    dvc("add", "data", cwd=tmp_path)
    dvc("push", cwd=tmp_path)
    shutil.rmtree(tmp_path / "data")
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    dvc("pull", cwd=tmp_path)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "data").iterdir()}
    assert after == before
    assert "up to date" in dvc("status", cwd=tmp_path).lower()
