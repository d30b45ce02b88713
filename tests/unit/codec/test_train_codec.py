"""train_codec and tokenize on a few click-track clips with a tiny codec: the logic, not the quality.

The demo codec's quality floors are checked end to end in tests/integration/test_tokens.py.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from vmas.codec import load_codec
from vmas.codec.train_codec import split_clips, train_codec
from vmas.errors import CodecGateError
from vmas.config import load_config
from vmas.curation import STAGES
from vmas.curation.runner import run_stage
from vmas.errors import StageError
from vmas.layout import manifest_dir
from vmas.layout import trained_codec_path
from vmas.manifest import Manifest

SR = 32000
TINY_CODEC = ["codec.pretrained=null", "codec.channels=2", "codec.dimension=16", "codec.lstm_layers=0", "codec.cardinality=64",
              "codec.train.max_steps=6", "codec.train.batch_size=2", "codec.train.segment_s=0.5",
              "codec.gate.min_si_snr_db=-100", "codec.gate.max_mel_distance=1000", "codec.gate.min_onset_f=0"]


def _clip_audio(seed: int, seconds: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.05 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    for start in np.arange(0.25, seconds, 0.5):
        n = np.arange(int(0.1 * SR))
        y[int(start * SR) : int(start * SR) + len(n)] += 0.5 * np.exp(-n / 600) * rng.standard_normal(len(n))
    return y.astype(np.float32)


@pytest.fixture
def clips_cfg(tmp_path, repo):
    """A clip and a beats manifest of 6 four-second clips from 3 'videos', and a config over them."""
    cfg = load_config(repo / "configs" / "demo.yaml",
                      overrides=[f"paths.artifacts_dir={tmp_path / 'artifacts'}", *TINY_CODEC])
    clip_rows, beat_rows = [], []
    for v in range(3):
        for k in range(2):
            cid, audio = f"video{v}/{k:04d}", tmp_path / f"video{v}-{k}.wav"
            sf.write(audio, _clip_audio(10 * v + k), SR)
            base = {"id": cid, "input_id": f"video{v}", "key": f"k{v}{k}", "error": None, "video_id": f"video{v}",
                    "audio_path": str(audio), "video_path": str(tmp_path / f"video{v}-{k}.mp4")}
            clip_rows.append({**base, "start_s": 4.0 * k, "end_s": 4.0 * (k + 1)})
            beat_rows.append({**base, "token_rate": 50, "beat_weights": [0.5] * 200})
    Manifest(manifest_dir(cfg, "clip"), STAGES["clip"].schema).append(clip_rows)
    Manifest(manifest_dir(cfg, "beats"), STAGES["beats"].schema).append(beat_rows)
    return cfg


def test_split_holds_out_whole_videos():
    clips = [{"id": f"v{v}/{k}", "video_id": f"v{v}"} for v in range(10) for k in range(3)]
    train, held = split_clips(clips, 0.2, seed=0)
    assert len({c["video_id"] for c in held}) == 2 and len(train) + len(held) == 30
    assert not {c["video_id"] for c in train} & {c["video_id"] for c in held}
    assert split_clips(clips, 0.2, seed=0) == (train, held)
    with pytest.raises(StageError, match="at least 2"):
        split_clips(clips[:3], 0.2, seed=0)


def test_train_publish_reuse_and_tokenize(clips_cfg):
    cfg = clips_cfg
    with pytest.raises(StageError, match="run `vmas train_codec`"):
        run_stage("tokenize", cfg, progress=False)
    report = train_codec(cfg, progress=False)
    out = trained_codec_path(cfg).parent
    assert report["gate"]["passed"] and report["held_out_clips"] == 2 and len(report["history"]) == 6
    assert {"si_snr_db", "mel_distance_db", "onset_f"} <= set(report["metrics"])
    assert (out / "training_curves.png").stat().st_size > 0 and (out / "reconstruction.png").stat().st_size > 0
    codec = load_codec(trained_codec_path(cfg))
    assert (codec.num_codebooks, codec.cardinality, codec.frame_rate) == (4, 64, 50)

    mtime = trained_codec_path(cfg).stat().st_mtime_ns
    assert train_codec(cfg, progress=False)["fingerprint"] == report["fingerprint"]  # nothing retrained
    assert trained_codec_path(cfg).stat().st_mtime_ns == mtime

    tokens = run_stage("tokenize", cfg, workers=2, progress=False)  # spawned workers: torch is loaded here
    assert (tokens.rows, tokens.errors) == (6, 0)
    rows = Manifest(manifest_dir(cfg, "tokenize")).read().to_pylist()
    for row in rows:
        with np.load(row["tokens_path"]) as npz:
            codes, weights = npz["codes"], npz["beat_weights"]
        assert codes.dtype == np.int16 and codes.shape == (4, 200) == (row["num_codebooks"], row["num_steps"])
        assert 0 <= codes.min() and codes.max() < 64 and weights.shape == (200,)
        audio = torch.from_numpy(sf.read(row["audio_path"], dtype="float32")[0])[None, None]
        assert np.array_equal(codec.encode(audio)[0].numpy(), codes)  # the codes of the published codec
        assert row["video_path"].endswith(".mp4")
    assert run_stage("tokenize", cfg, progress=False).processed == 0  # resumable: all done


def test_gate_failure_keeps_the_candidate_and_relaxing_it_publishes(clips_cfg):
    strict = clips_cfg.model_copy(update={"codec": clips_cfg.codec.model_copy(
        update={"gate": clips_cfg.codec.gate.model_copy(update={"min_si_snr_db": 90.0})})})
    with pytest.raises(CodecGateError, match="codec.gate.min_si_snr_db"):
        train_codec(strict, progress=False)
    out = trained_codec_path(strict).parent
    assert (out / "candidate.bin").is_file() and not trained_codec_path(strict).exists()
    assert json.loads((out / "report.json").read_text())["gate"]["passed"] is False
    with pytest.raises(StageError, match="no codec"):
        run_stage("tokenize", strict, progress=False)
    report = train_codec(clips_cfg, progress=False)  # same training, gate relaxed: judged again, not retrained
    assert report["gate"]["passed"] and trained_codec_path(clips_cfg).is_file()
    assert not (out / "candidate.bin").exists()


def test_tokenize_refuses_a_codec_unlike_the_config(clips_cfg):
    train_codec(clips_cfg, progress=False)
    other = clips_cfg.model_copy(update={"codec": clips_cfg.codec.model_copy(update={"n_q": 8})})
    with pytest.raises(StageError, match="n_q"):
        run_stage("tokenize", other, progress=False)
    missing = clips_cfg.model_copy(update={"codec": clips_cfg.codec.model_copy(update={"pretrained": "/nope"})})
    with pytest.raises(StageError, match="codec.pretrained"):
        run_stage("tokenize", missing, progress=False)
