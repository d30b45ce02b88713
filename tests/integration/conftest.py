"""The curated tiny set, shared by the curation and the codec/token end-to-end tests."""

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from vmas.config import load_config
from vmas.curation import STAGES
from vmas.curation.ingest import ingest
from vmas.curation.runner import run_stage
from vmas.layout import manifest_dir
from vmas.media import write_mp4



def _bad_files(folder: Path, good: Path) -> dict[str, str]:
    """The broken inputs of the issue, each with the reason tag it must get."""
    folder.mkdir()
    data = good.read_bytes()
    (folder / "corrupt.mp4").write_bytes(data[:48] + bytes(4000) + data[4048 : len(data) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is a text file renamed to mp4\n")
    write_mp4(folder / "silent.mp4", [np.zeros((64, 64, 3), np.uint8)] * 30, 25)
    with av.open(str(folder / "audio_only.mp4"), "w") as c:
        s = c.add_stream("aac", rate=32000, layout="mono")
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 32000, i * 1024
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return {"corrupt.mp4": "unreadable", "empty.mp4": "empty", "notes.mp4": "unreadable",
            "silent.mp4": "no_audio", "audio_only.mp4": "no_video"}


@pytest.fixture(scope="session")
def curated(tiny_set, tmp_path_factory, repo):
    root = tmp_path_factory.mktemp("curation")
    raw = root / "raw"
    shutil.copytree(tiny_set, raw / "synth")
    expected_errors = _bad_files(raw / "bad", next((raw / "synth").glob("*.mp4")))
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={root / 'artifacts'}"])
    counts = ingest(cfg, manifest_dir(cfg, "ingest"), [raw], progress=False)
    curation = [n for n, s in STAGES.items() if s.process is not None and n != "tokenize"]
    reports = {name: run_stage(name, cfg, workers=2, progress=False) for name in curation}
    return cfg, raw, counts, reports, expected_errors


@pytest.fixture(scope="session")
def demo_pipeline(tmp_path_factory, repo):
    """The demo's data with the shipped demo profile, built by the CLI: `vmas synth` then `vmas curate`
    (curation, then tokenize with the demo codec shipped in the package: the stages and library functions
    `make demo` materialises through Dagster), as subprocesses, in a fresh folder."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("demo")
    sets = ["--set", f"paths.data_dir={root / 'data'}", "--set", f"paths.artifacts_dir={root / 'artifacts'}"]
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    for args in (["synth", "--workers", "2", "--no-progress"], ["curate", "--workers", "2", "--no-progress"]):
        result = subprocess.run([vmas, *args, "--config", str(repo / "configs" / "demo.yaml"), *sets], cwd=root,
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.data_dir={root / 'data'}",
                                                                 f"paths.artifacts_dir={root / 'artifacts'}"])
    return cfg, result.stdout


def _train_demo(cfg, repo, *args) -> dict:
    """`vmas train` on the demo pipeline's tokens, as a user runs it; the printed report."""
    import json
    import os
    import subprocess
    import sys

    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    sets = ["--set", f"paths.data_dir={cfg.paths.data_dir}", "--set", f"paths.artifacts_dir={cfg.paths.artifacts_dir}"]
    result = subprocess.run([vmas, "train", "--no-progress", *args, "--config", str(repo / "configs" / "demo.yaml"),
                             *sets], capture_output=True, text=True, cwd=Path(cfg.paths.artifacts_dir).parent,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture(scope="session")
def train_demo():
    return _train_demo


@pytest.fixture(scope="session")
def trained(demo_pipeline, repo):
    """The demo model trained 12 steps (validation and checkpoints every 6), shared by the training and
    evaluation tests so neither finds the other's run in its way."""
    import json

    from vmas.layout import output_dir

    cfg, _ = demo_pipeline
    first = _train_demo(cfg, repo, "--max-steps", "12", "--set", "train.val_every_n_steps=6",
                        "--set", "train.checkpoint_every_n_steps=6")
    first["history"] = json.loads((output_dir(cfg, "train") / "report.json").read_text())["history"]  # not printed
    return cfg, first


@pytest.fixture(scope="session")
def tiny_pipeline() -> list[str]:
    """Overrides that trim the demo profile to seconds for the orchestration tests: a 4-step codec (trained
    here, not the shipped one, so the train_codec stage runs) and model, a permissive codec gate, half the
    videos held out (so evaluation has clips to score)."""
    return ["codec.pretrained=null", "codec.train.max_steps=4", "codec.train.batch_size=2", "codec.gate.min_si_snr_db=-100",
            "codec.gate.max_mel_distance=1000", "codec.gate.min_onset_f=0", "train.max_steps=4",
            "train.val_every_n_steps=2", "train.checkpoint_every_n_steps=2", "train.val_share=0.5",
            "train.num_workers=0", "evaluate.report_clips=1"]
