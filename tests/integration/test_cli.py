"""The ``vmas`` console script, run as a user runs it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VMAS = [shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")]


def run(*args, cwd=None, check=True):
    result = subprocess.run([*VMAS, *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("command", [[], ["synth"], ["config"], ["config", "show"], ["config", "check"],
                                     ["config", "use"], ["config", "profiles"], ["curate"], ["train_codec"],
                                     ["tokenize"], ["train"], ["ablation"]])
def test_every_command_has_help(command):
    out = run(*command, "--help").stdout
    assert "Usage:" in out and "--help" in out


def test_version():
    assert run("--version").stdout.startswith("vmas ")


def test_config_show_and_profiles(repo):
    shown = run("config", "show", "--profile", "paper", "--set", "synth.n=7", cwd=repo).stdout
    assert "profile: paper" in shown and "n: 7" in shown and "num_layers: 48" in shown
    assert {"demo", "paper"} <= {line.split("\t")[0] for line in run("config", "profiles", cwd=repo).stdout.splitlines()}


def test_bad_config_exits_2_with_a_clear_message(repo):
    result = run("config", "check", "--set", "filter_static.treshold=0.5", cwd=repo, check=False)
    assert result.returncode == 2
    assert "unknown key 'filter_static.treshold'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_use_writes_params(repo, tmp_path):
    run("config", "use", "paper", "--target", str(tmp_path / "params.yaml"), cwd=repo)
    assert "profile: paper" in (tmp_path / "params.yaml").read_text()


def test_synth_command_writes_the_set(repo, tmp_path):
    result = run("--log-json", "synth", "--out", str(tmp_path / "data"), "--n", "2", "--seed", "3",
                 "--set", "synth.max_duration_s=6", "--set", "synth.short_side=64", "--no-progress", cwd=repo)
    assert "2 rendered, 0 already there" in result.stdout
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "synth done" and rec["rendered"] == 2 for rec in logs)
    index = json.loads((tmp_path / "data" / "synth.json").read_text())
    assert [i["item_id"] for i in index["items"]] == ["synth-0003-00000", "synth-0003-00001"]
    assert index["config"]["seed"] == 3
