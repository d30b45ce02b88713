"""`dvc repro` with the repository's dvc.yaml on four tiny videos: every stage runs (each followed by
its GX suite), a second run finds everything up to date, and a changed parameter re-runs exactly the
stages that read it and those downstream; `dvc metrics show` / `dvc plots show` read the outputs.
The last stage, `generate`, gives the first video music from the registered champion."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vmas.config import load_config

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STAGES = ["ingest", "download", "probe", "filter_static", "remove_vocals", "clip", "beats", "train_codec", "tokenize",
          "shard", "train", "evaluate", "register", "generate"]


def dvc(*args, cwd, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert not check or result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    return result


def ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


@pytest.fixture(scope="module")
def project(tiny_set, tiny_pipeline, tmp_path_factory, repo):
    """A DVC project (no git) holding the repository's dvc.yaml and the code its stages depend on,
    four videos in data/ (the first given music by `generate`) and a params.yaml of the trimmed demo
    profile; `dvc repro` run once."""
    root = tmp_path_factory.mktemp("dvc_pipeline")
    videos = sorted(tiny_set.glob("*.mp4"))[:4]
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert [list(v) for v in spec["vars"]] == [["demo_video"]]
    spec["vars"] = [{"demo_video": videos[0].name}]
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copytree(repo / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "data").mkdir()
    for video in videos:
        shutil.copy2(video, root / "data" / video.name)
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=tiny_pipeline)
    (root / "params.yaml").write_text(cfg.to_yaml())
    dvc("init", "--no-scm", "-q", cwd=root)
    first = dvc("repro", cwd=root)
    return root, first.stdout


def test_repro_runs_every_stage_and_then_finds_everything_up_to_date(project):
    root, first = project
    assert ran(first) == STAGES
    assert "evaluate: 6 rows, passed" in first and "probe: 4 rows, passed" in first  # each stage's GX suite
    assert dvc("status", "-q", cwd=root, check=False).returncode == 0
    assert json.loads(dvc("status", "--json", cwd=root).stdout) == {}
    second = dvc("repro", cwd=root).stdout
    assert ran(second) == [] and second.count("didn't change, skipping") == len(STAGES)


def test_generate_gives_the_demo_video_music_from_the_registered_model(project):
    root, _ = project
    video = yaml.safe_load((root / "dvc.yaml").read_text())["vars"][0]["demo_video"]
    out = root / "artifacts" / "generate"
    sidecar = json.loads((out / f"{Path(video).stem}.json").read_text())
    assert sidecar["input"] == f"data/{video}" and (root / sidecar["video"]).is_file() and (root / sidecar["wav"]).is_file()
    evaluated = json.loads((root / "artifacts" / "evaluate" / "evaluation.json").read_text())
    assert sidecar["model_sha256"] == evaluated["model_sha256"]  # the champion is the model just evaluated


def test_metrics_and_plots_come_from_the_stage_outputs(project):
    root, _ = project
    metrics = json.loads(dvc("metrics", "show", "--json", cwd=root).stdout)
    [values] = [v["data"]["artifacts/evaluate/metrics.json"]["data"] for v in metrics.values()]
    assert set(values) == {"mv_align", "mv_align_reference", "mv_align_chance", "mv_align_reference_chance",
                           "mv_align_codec", "fad", "fad_codec", "kl", "kl_codec", "retrieval_r1", "retrieval_r10"}
    plots = json.loads(dvc("plots", "show", "--json", cwd=root).stdout)
    [curve] = plots["data"]["artifacts/train/training_curve.csv"]
    steps = [int(row["step"]) for row in curve["content"]["data"]["values"]]
    assert steps == [1, 2, 3, 4]


def test_a_changed_parameter_reruns_only_the_stages_it_affects(project):
    root, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    before = json.loads((root / "artifacts" / "train" / "report.json").read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = json.loads(dvc("status", "--json", cwd=root).stdout)
    assert stale == {"train": [{"changed deps": {"params.yaml": {"train": "modified"}}}]}
    output = dvc("repro", cwd=root).stdout
    assert ran(output) == ["train", "evaluate", "register", "generate"]
    after = json.loads((root / "artifacts" / "train" / "report.json").read_text())
    # new settings: trained afresh (not resumed, not skipped as done), then registered as version 2
    assert after["resumed_from"] is None and after["trained_on"]["fingerprint"] != before["trained_on"]["fingerprint"]
    runs = {d.name for d in (root / "artifacts" / "train" / "checkpoints").iterdir()}
    assert runs == {before["trained_on"]["fingerprint"], after["trained_on"]["fingerprint"]}
    registration = json.loads((root / "artifacts" / "register" / "registration.json").read_text())
    assert registration["version"] == 2 and registration["new"] is True
    assert dvc("status", "-q", cwd=root, check=False).returncode == 0
