"""Sampling: the streamed (KV-cached) loop agrees with the teacher-forced model, and seeds reproduce."""

import pytest
import torch

from vmas.models.builders import build_vmas
from vmas.models.sample import SamplingSettings, generate_codes, sample_logits


@pytest.fixture(scope="module")
def model(repo):
    from vmas.config import load_config

    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["model.music_decoder.num_layers=1"])
    torch.manual_seed(0)
    return build_vmas(cfg, torch.randn(4, 2048, cfg.codec.dimension), load_pretrained=False).eval()


def _frames(batch=2, seed=0):
    return torch.randn(batch, 3, 50, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_greedy_streaming_matches_teacher_forcing(model):
    """Each greedy code is the argmax of the full (non-streamed) forward pass over the final codes."""
    frames = _frames()
    codes = generate_codes(model, frames, 12, SamplingSettings(guidance=1.0, temperature=0.0))
    assert codes.shape == (2, 4, 12) and codes.dtype == torch.long
    with torch.no_grad():
        out = model(codes, frames)
    expected = out.logits.argmax(-1)  # [B, K, T]
    valid = out.mask.bool()
    assert torch.equal(expected[valid], codes[valid])


def test_guided_greedy_matches_mixed_teacher_forcing(model):
    frames, scale = _frames(), 2.5
    codes = generate_codes(model, frames, 8, SamplingSettings(guidance=scale, temperature=0.0))
    with torch.no_grad():
        c = model(codes, frames).logits
        u = model(codes, frames, keep=torch.zeros(2, dtype=torch.bool)).logits
    mixed = u + scale * (c - u)
    valid = ~torch.isnan(mixed[..., 0])
    assert torch.equal(mixed.argmax(-1)[valid], codes[valid])


def test_seed_reproduces_and_differs(model):
    s = SamplingSettings(guidance=3.0, temperature=1.0, top_k=50)
    a = generate_codes(model, _frames(), 10, s, torch.Generator().manual_seed(1))
    b = generate_codes(model, _frames(), 10, s, torch.Generator().manual_seed(1))
    c = generate_codes(model, _frames(), 10, s, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 2048


def test_top_k_and_top_p_keep_only_likely_tokens():
    logits = torch.full((1, 2, 10), -10.0)
    logits[..., 3], logits[..., 7] = 5.0, 4.9
    g = torch.Generator().manual_seed(0)
    for settings in (SamplingSettings(top_k=2), SamplingSettings(top_k=0, top_p=0.9)):
        picks = {int(t) for _ in range(50) for t in sample_logits(logits, settings, g).flatten()}
        assert picks == {3, 7}
    assert sample_logits(logits, SamplingSettings(temperature=0), g).flatten().tolist() == [3, 3]


def test_training_mode_is_refused(model):
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval"):
            generate_codes(model, _frames(1), 4)
    finally:
        model.eval()
