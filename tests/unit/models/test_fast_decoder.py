"""The fast decoder reproduces audiocraft's streamed LMModel, with and without a prompt."""

import pytest
import torch

from vmas.models.builders import build_vmas
from vmas.models.fast_decoder import FastDecoder
from vmas.models.sample import SamplingSettings, generate_codes


@pytest.fixture(scope="module")
def model(repo):
    from vmas.config import load_config

    cfg = load_config(repo / "configs" / "demo.yaml")
    torch.manual_seed(0)
    return build_vmas(cfg, torch.randn(4, 2048, cfg.codec.dimension), load_pretrained=False).eval()


def _frames(batch=2, seed=0):
    return torch.randn(batch, 3, 50, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_step_logits_match_audiocraft_streaming(model, static):
    """Both the dynamic-shape steps and the fixed-shape ones (what a CUDA graph replays)."""
    lm = model.music_decoder
    cond = model.condition(model.video_encoder(_frames()))
    tokens = torch.randint(0, 2048, (2, 4, 9), generator=torch.Generator().manual_seed(1))
    fast = FastDecoder(lm, static=static)
    fast.start(cond, 9)
    with torch.no_grad(), lm.streaming():
        for chunk in (tokens[..., :3], *[tokens[..., i : i + 1] for i in range(3, 9)]):  # a 3-step prompt, then steps
            expected = lm(chunk, conditions=[], condition_tensors=cond)
            assert torch.allclose(fast.step(chunk), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="past the 9 steps"):
        fast.step(tokens[..., :1])


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_fast_and_audiocraft_sampling_agree(model, guidance):
    settings = SamplingSettings(guidance=guidance, temperature=1.0, top_k=50)
    runs = {decoder: generate_codes(model, _frames(), 30, settings, torch.Generator().manual_seed(3), decoder=decoder)
            for decoder in ("fast", "static", "audiocraft")}
    assert torch.equal(runs["fast"], runs["audiocraft"]) and torch.equal(runs["static"], runs["audiocraft"])


def test_a_prompt_is_kept_and_continued(model):
    prompt = torch.randint(0, 2048, (2, 4, 12), generator=torch.Generator().manual_seed(4))
    settings = SamplingSettings(temperature=0.0)
    out = generate_codes(model, _frames(), 20, settings, prompt=prompt)
    assert out.shape == (2, 4, 20) and torch.equal(out[..., :12], prompt)
    ref = generate_codes(model, _frames(), 20, settings, prompt=prompt, decoder="audiocraft")
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="does not fit"):
        generate_codes(model, _frames(), 12, settings, prompt=prompt)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_matches_the_dynamic_steps(model):
    gpu = model.cuda()
    try:
        settings = SamplingSettings(guidance=3.0, temperature=0.0)
        frames = _frames().cuda()
        assert torch.equal(generate_codes(gpu, frames, 40, settings, decoder="static"),
                           generate_codes(gpu, frames, 40, settings, decoder="fast"))
    finally:
        model.cpu()
