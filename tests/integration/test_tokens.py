"""The demo's codec and tokens: the codec shipped in the package (the demo profile's `vmas:demo`), its
quality on the demo's own clips, `vmas train_codec` from the CLI with its MLflow run, then the tokens.

The shipped codec is a fixed file, so its figures are the same on every machine up to float rounding; the
floors below sit well under what it measures on these clips (see src/vmas/codec/weights/demo/README.md).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from vmas.codec import load_codec
from vmas.codec.loading import resolve_codec_path
from vmas.codec.train_codec import evaluate_codec
from vmas.config import BUNDLED_CODECS
from vmas.curation.runner import run_stage
from vmas.io import file_sha256
from vmas.layout import output_dir
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.tracking.runs import tracking_uri

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(demo_pipeline):
    return demo_pipeline


def test_the_demo_profile_tokenizes_with_the_shipped_codec(demo):
    cfg, stdout = demo
    shipped = BUNDLED_CODECS / "demo" / "compression_state_dict.bin"
    assert resolve_codec_path(cfg) == shipped and not (output_dir(cfg, "train_codec") / "compression_state_dict.bin").exists()
    rows = Manifest(manifest_dir(cfg, "tokenize")).read().to_pylist()
    assert {r["codec_sha256"] for r in rows} == {file_sha256(shipped)}
    codec = load_codec(shipped)
    assert (codec.num_codebooks, codec.cardinality, codec.frame_rate, codec.sample_rate) == (4, 2048, 50, 32000)


def test_the_shipped_codec_keeps_the_music_and_its_onsets(demo):
    cfg, _ = demo
    clips = [r for r in Manifest(manifest_dir(cfg, "clip")).iter_rows(["id", "audio_path", "error"])
             if r["error"] is None]  # the clips report.json's demo_set figures were measured on
    metrics = evaluate_codec(load_codec(resolve_codec_path(cfg)), clips, cfg.codec.gate.onset_tolerance_s)
    measured = json.loads((BUNDLED_CODECS / "demo" / "report.json").read_text())["demo_set"]
    assert len(clips) == measured["clips"]
    # a fixed file on the same clips: only float rounding differs between machines; the margins are wide
    assert metrics["si_snr_db"] >= measured["si_snr_db"] - 2.0, (metrics, measured)
    assert metrics["onset_f"] >= measured["onset_f"] - 0.1 and metrics["onset_f_shifted"] < 0.2
    assert metrics["mel_distance_db"] <= measured["mel_distance_db"] + 2.0


def test_train_codec_from_the_cli_is_logged_to_mlflow(demo):
    """`vmas train_codec` with codec.pretrained null trains a codec (a few steps here) and logs its run."""
    cfg, _ = demo
    vmas = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
    root = Path(cfg.paths.artifacts_dir).parent
    sets = [f"paths.data_dir={cfg.paths.data_dir}", f"paths.artifacts_dir={root / 'codec-run'}",
            "codec.pretrained=null", "codec.train.max_steps=4", "codec.train.batch_size=2",
            "codec.gate.min_si_snr_db=-100", "codec.gate.max_mel_distance=1000", "codec.gate.min_onset_f=0"]
    (root / "codec-run" / "manifests").mkdir(parents=True, exist_ok=True)
    shutil.copytree(manifest_dir(cfg, "clip"), root / "codec-run" / "manifests" / "clip", dirs_exist_ok=True)
    args = [vmas, "train_codec", "--config", str(Path(__file__).parents[2] / "configs" / "demo.yaml")]
    for s in sets:
        args += ["--set", s]
    result = subprocess.run(args, capture_output=True, text=True, cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    trained = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"artifacts_dir": root / "codec-run"})})
    report = json.loads((output_dir(trained, "train_codec") / "report.json").read_text())
    assert report["gate"]["passed"] and report["steps"] == 4
    client = mlflow.tracking.MlflowClient(tracking_uri(trained))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'train_codec'")
    assert run.data.metrics["codec/heldout_si_snr_db"] == pytest.approx(report["metrics"]["si_snr_db"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "train_codec")}
    assert {"train_codec/report.json", "train_codec/training_curves.png", "train_codec/reconstruction.png"} <= logged


def test_tokens_are_the_training_set(demo):
    cfg, _ = demo
    beats = [r for r in Manifest(manifest_dir(cfg, "beats")).iter_rows() if r["error"] is None]
    rows = Manifest(manifest_dir(cfg, "tokenize")).read().to_pylist()
    assert len(rows) == len(beats) >= 40 and all(r["error"] is None for r in rows)
    steps = int(cfg.clip.seconds * cfg.codec.frame_rate)
    for row in rows:
        with np.load(row["tokens_path"]) as npz:
            codes, weights = npz["codes"], npz["beat_weights"]
        assert codes.shape == (cfg.codec.n_q, steps) and codes.dtype == np.int16
        assert 0 <= codes.min() and codes.max() < cfg.codec.cardinality
        assert weights.shape == (steps,) and row["video_path"].endswith(".mp4")
    used = {int(c) for row in rows[:10] for c in np.load(row["tokens_path"])["codes"][0]}
    assert len(used) > 20  # the first codebook is not collapsed onto a few entries
    assert run_stage("tokenize", cfg, progress=False).processed == 0  # a second run does no work
