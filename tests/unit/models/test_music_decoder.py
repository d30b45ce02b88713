"""The music decoder: delay pattern, causality, video conditioning, MusicGen checkpoints."""

import pytest
import torch
from omegaconf import OmegaConf

from vmas.models.music_decoder import MusicDecoderSpec, build_music_decoder, is_fresh, load_musicgen_lm

SPEC = MusicDecoderSpec(n_q=4, card=64, dim=32, num_heads=4, num_layers=2)


def _video(batch=2, steps=8):
    return {"video": (torch.randn(batch, steps, SPEC.dim), torch.ones(batch, steps))}


@pytest.fixture
def lm():
    torch.manual_seed(0)
    return build_music_decoder(SPEC).eval()


def test_logits_align_with_codes_and_the_delay_pattern_masks_the_tail(lm):
    codes = torch.randint(0, 64, (2, 4, 20))
    out = lm.compute_predictions(codes, [], _video())
    assert out.logits.shape == (2, 4, 20, 64) and out.mask.shape == (2, 4, 20)
    for k in range(4):  # codebook k is delayed by k steps: its last k predictions have no valid context
        assert out.mask[0, k, : 20 - k].all() and not out.mask[0, k, 20 - k :].any()
    assert torch.isfinite(out.logits[out.mask]).all()


def test_future_codes_never_change_past_logits(lm):
    """Causal in the delayed order: code (k, t) sits at pattern step t + k + 1, and its logits never
    depend on codes at the same or a later pattern step."""
    torch.manual_seed(1)
    codes = torch.randint(0, 64, (1, 4, 20))
    video = _video(1)
    before = lm.compute_predictions(codes, [], video)
    step = torch.arange(20)[None, :] + torch.arange(4)[:, None] + 1  # [K, T] pattern step of each code
    cut = 12
    changed = torch.where(step[None] >= cut, torch.randint(0, 64, (1, 4, 20)), codes)
    after = lm.compute_predictions(changed, [], video)
    past = (step <= cut) & before.mask[0]
    assert torch.allclose(before.logits[0][past], after.logits[0][past], atol=1e-5)
    later = (step > cut) & before.mask[0]
    assert not torch.allclose(before.logits[0][later], after.logits[0][later])


def test_the_video_changes_the_predictions(lm):
    codes = torch.randint(0, 64, (1, 4, 10))
    a = lm.compute_predictions(codes, [], _video(1)).logits
    b = lm.compute_predictions(codes, [], _video(1)).logits
    assert not torch.allclose(a[torch.isfinite(a)], b[torch.isfinite(b)])


def test_musicgen_checkpoint_loads_except_text_conditioning_and_cross_attention(lm, tmp_path):
    """A MusicGen LM export as audiocraft writes it: {"best_state", "xp.cfg"} with a T5 projection."""
    torch.manual_seed(2)
    source = build_music_decoder(SPEC)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["condition_provider.conditioners.description.output_proj.weight"] = torch.randn(32, 768)
    state["condition_provider.conditioners.description.output_proj.bias"] = torch.randn(32)
    torch.save({"best_state": state, "xp.cfg": OmegaConf.to_yaml(OmegaConf.create({"lm_model": "transformer_lm"}))},
               tmp_path / "state_dict.bin")
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    report = load_musicgen_lm(lm, tmp_path)  # the folder, as a MusicGen snapshot holds it
    after = lm.state_dict()
    assert report["fresh"] and all(is_fresh(k) for k in report["fresh"])
    for name in after:
        if is_fresh(name):
            assert torch.equal(after[name], before[name]), name  # video cross-attention stays fresh
        else:
            assert torch.equal(after[name], state[name]), name
    assert any(".cross_attention." in k for k in report["fresh"])


def test_a_musicgen_of_another_shape_is_refused(lm, tmp_path):
    other = build_music_decoder(MusicDecoderSpec(n_q=4, card=64, dim=48, num_heads=4, num_layers=2))
    torch.save({"best_state": other.state_dict()}, tmp_path / "state_dict.bin")
    with pytest.raises(ValueError, match="not a MusicGen LM of this shape"):
        load_musicgen_lm(lm, tmp_path / "state_dict.bin")
    with pytest.raises(FileNotFoundError, match="model.music_decoder.pretrained"):
        load_musicgen_lm(lm, tmp_path / "missing.bin")
