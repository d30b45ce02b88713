"""Embedders chosen by name: the bundled musicnn, and a TorchScript model the test writes itself."""

import numpy as np
import pytest
import torch

from vmas.evaluation.embeddings import load_embedder


class _Spectral(torch.nn.Module):
    """A stand-in for VGGish/CLAP in their TorchScript form: [1, n] audio at 16 kHz -> [W, 8]."""

    sample_rate: int

    def __init__(self):
        super().__init__()
        self.sample_rate = 16000
        self.proj = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x[0, : x.shape[1] // 1600 * 1600].reshape(-1, 1600)
        return self.proj(torch.log1p(torch.fft.rfft(frames).abs()[:, :32]))


def test_torchscript_embedder_resamples_and_embeds(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "embedder.pt"
    torch.jit.script(_Spectral()).save(str(path))
    embedder = load_embedder(f"torchscript:{path}")
    assert embedder.name == "torchscript:embedder.pt" and embedder.sample_rate == 16000
    audio = np.random.default_rng(0).standard_normal(32000).astype(np.float32)  # 1 s at 32 kHz
    emb = embedder.embed(audio, 32000)
    assert emb.shape == (10, 8) and np.isfinite(emb).all()  # resampled to 16 kHz: 10 frames of 1600
    assert embedder.tags(audio, 32000) is None  # no tags method: KL is reported as unavailable


def test_default_embedder_is_the_bundled_musicnn():
    embedder = load_embedder("musicnn")
    audio = np.random.default_rng(0).standard_normal(16000 * 7).astype(np.float32) * 0.1
    assert "musicnn" in embedder.name
    assert embedder.embed(audio, 16000).shape == (2, 200) and embedder.tags(audio, 16000).shape == (2, 50)


def test_bad_embedding_settings_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown embedding 'vggish'"):
        load_embedder("vggish")
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_embedder(f"torchscript:{tmp_path / 'nothing.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript module"):
        load_embedder(f"torchscript:{tmp_path / 'junk.pt'}")
