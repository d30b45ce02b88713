"""The contrastive embeddings: video-blind on the music side, and distinct for distinct clips.

The paper's music feature (softmax(logits) x codebooks, pooled) is nearly one shared vector for
every clip while the decoder is unsure; InfoNCE over it has nothing to work with. These tests fail
on that collapse, and on a music embedding that can read the video.
"""

import torch
import torch.nn.functional as F

from vmas.config import load_config
from vmas.models.builders import build_vmas
from vmas.modules.losses import music_features
from vmas.training.module import LossSettings, OptimSettings, VMAsTraining


def _tiny(repo):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["model.music_decoder.dim=32",
                                                                 "model.music_decoder.num_layers=1"])
    torch.manual_seed(0)
    return build_vmas(cfg, torch.randn(4, 2048, cfg.codec.dimension), load_pretrained=False), cfg


def _clips(cfg, n=8, seconds=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (n, 4, int(seconds * cfg.codec.frame_rate)), generator=g)
    frames = torch.randn(n, 3, cfg.video.frames, cfg.video.size, cfg.video.size, generator=g)
    return codes, frames


def _off_diagonal_cosine(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x.float(), dim=-1)
    sim = x @ x.T
    return sim[~torch.eye(len(x), dtype=torch.bool)]


def test_distinct_clips_keep_distinct_music_embeddings_after_training(repo):
    model, cfg = _tiny(repo)
    codes, frames = _clips(cfg)
    module = VMAsTraining(model, LossSettings(beat_weighting=False, contrastive_weight=1.0),
                          OptimSettings(lr=1e-3, max_steps=8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = {"codes": codes, "frames": frames, "beat_weights": torch.ones(codes.shape[0], codes.shape[-1])}
    for _ in range(8):
        terms = module.losses(batch, keep=torch.ones(codes.shape[0], dtype=torch.bool))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        video = model.video_encoder(frames)
        music = model.music_embedding(codes, video)
        nulled = model.music_decoder.compute_predictions(
            codes, [], model.condition(video, torch.zeros(len(codes), dtype=torch.bool)))
        pooled = music_features(nulled.logits, nulled.mask, model.codebooks)
    # the paper's pooled features are one shared direction for every clip at this stage ...
    assert _off_diagonal_cosine(pooled).mean() > 0.95
    # ... the embedding the loss and retrieval use is not
    cosine = _off_diagonal_cosine(music)
    assert cosine.abs().mean() < 0.5 and cosine.max() < 0.9, cosine


def test_the_music_embedding_does_not_see_the_video(repo):
    model, cfg = _tiny(repo)
    codes, frames = _clips(cfg, n=3)
    model.eval()
    with torch.no_grad():
        a = model.music_embedding(codes, model.video_encoder(frames))
        b = model.music_embedding(codes, model.video_encoder(torch.randn_like(frames)))
        other = model.music_embedding(codes.roll(1, dims=0), model.video_encoder(frames))
    assert torch.equal(a, b)
    assert not torch.allclose(a, other)


def test_video_features_sit_at_their_token_time(repo):
    """A video feature and the music tokens of the same instant share their sinusoidal position."""
    from vmas.models.vmas import time_positions

    model, cfg = _tiny(repo)
    assert model.tokens_per_feature == cfg.codec.frame_rate / cfg.video.fps  # temporal stride 1 in the demo
    positions = time_positions(cfg.video.frames, model.tokens_per_feature)[0, :, 0]
    seconds = torch.arange(cfg.video.frames) / cfg.video.fps  # when each frame was taken
    assert torch.allclose(positions, seconds * cfg.codec.frame_rate)
    assert time_positions(4, None)[0, :, 0].tolist() == [0, 1, 2, 3]
