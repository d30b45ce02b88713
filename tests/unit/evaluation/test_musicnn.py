"""The PyTorch musicnn port against outputs of musicnn's own TensorFlow model.

``tests/fixtures/musicnn_reference.npz`` holds what musicnn 0.1.0 (TensorFlow 2.15, numpy 1.26, librosa 0.11)
computed for :func:`reference_signal` written to a 16 kHz WAV: its log-mel input, and for MTT_musicnn and MSD_musicnn
the taggram and penultimate features per 3 s window (``scripts/convert_musicnn.py --stage reference``).
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vmas.evaluation.musicnn import (DEFAULT_WEIGHTS, WEIGHTS_DIR, MusicnnTagger, frame_windows, log_mel)

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "musicnn_reference.npz"


def _convert_script():
    """scripts/convert_musicnn.py as a module (its top level needs only numpy): the test signal is made
    by the same function that made the reference outputs."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "scripts" / "convert_musicnn.py"
    spec = importlib.util.spec_from_file_location("convert_musicnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_signal() -> np.ndarray:
    """The reference file keeps the sha256 of this signal."""
    return _convert_script().reference_signal()


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def signal(reference) -> np.ndarray:
    """The test signal as librosa/soundfile read the reference's int16 WAV: float32 in [-1, 1)."""
    signal = reference_signal()
    assert hashlib.sha256(signal.tobytes()).hexdigest() == str(reference["signal_sha256"]), \
        "reference_signal() no longer reproduces the signal of the reference file"
    return signal.astype(np.float32) / 32768


@pytest.fixture(scope="module")
def taggers():
    return {"mtt": MusicnnTagger.load(), "msd": MusicnnTagger.load(WEIGHTS_DIR / "musicnn_msd.pt")}


def test_log_mel_matches_musicnn(signal, reference):
    mel = log_mel(signal, 16000)
    assert mel.shape == reference["log_mel"].shape == (626, 96) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, reference["log_mel"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["mtt", "msd"])
def test_outputs_match_tensorflow_on_the_reference_windows(taggers, reference, model):
    tagger = taggers[model]
    windows = frame_windows(reference["log_mel"])
    assert windows.shape == (3, 187, 96)
    tags, embeddings = tagger.run(windows)
    # measured: taggram within 2.1e-6, penultimate (values up to 3) within 1.1e-5
    np.testing.assert_allclose(tags, reference[f"{model}_taggram"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(embeddings, reference[f"{model}_penultimate"], rtol=0, atol=1e-4)
    assert tagger.labels == reference[f"{model}_labels"].tolist()


@pytest.mark.parametrize("model", ["mtt", "msd"])
def test_top_tags_end_to_end_match_tensorflow(taggers, signal, reference, model):
    tagger = taggers[model]
    tags, embeddings = tagger.tags(signal, 16000), tagger.embed(signal, 16000)
    assert tags.shape == (3, 50) and embeddings.shape == (3, tagger.dim) == (3, 200)
    top = np.argsort(-tags.mean(0))[:5]
    assert top.tolist() == np.argsort(-reference[f"{model}_taggram"].mean(0))[:5].tolist()
    if model == "mtt":
        assert [tagger.labels[i] for i in top] == ["techno", "electronic", "beat", "synth", "slow"]


def test_tagger_attributes(taggers):
    mtt = taggers["mtt"]
    assert mtt.name == "musicnn-MTT" and taggers["msd"].name == "musicnn-MSD"
    assert mtt.sample_rate == 16000 and len(mtt.labels) == 50 and mtt.labels[0] == "guitar"
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 5_000_000


def test_missing_or_garbage_weights_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        MusicnnTagger.load(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all" * 10)
    with pytest.raises(ValueError, match="garbage.pt"):
        MusicnnTagger.load(garbage)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {}}, wrong)
    with pytest.raises(ValueError, match="wrong.pt.*format"):
        MusicnnTagger.load(wrong)
    bad_shapes = tmp_path / "bad_shapes.pt"
    package = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    package["state_dict"]["dense.bias"] = torch.zeros(3)
    torch.save(package, bad_shapes)
    with pytest.raises(ValueError, match="bad_shapes.pt.*do not fit"):
        MusicnnTagger.load(bad_shapes)


def test_windows_and_short_clips(taggers):
    tagger = taggers["mtt"]
    short = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * 22050)) / 22050)  # 1.5 s at 22.05 kHz
    windows = tagger.windows(short, 22050)
    assert windows.shape == (1, 187, 96)
    assert (windows[0, 94:] == 0).all() and windows[0, :90].max() > 1  # 1.5 s is 94 frames, then padding
    assert tagger.tags(short, 22050).shape == (1, 50)
    assert tagger.embed(np.stack([short, short]), 22050).shape == (1, 200)  # [channels, n]
    # windows at frames 0, 187, 374, ...: whole windows only, no overlap
    frames = np.arange(600, dtype=np.float32)[:, None].repeat(96, 1)
    assert frame_windows(frames)[:, 0, 0].tolist() == [0, 187, 374]
    with pytest.raises(ValueError, match="channels"):
        tagger.windows(np.zeros((16000, 2)), 16000)
