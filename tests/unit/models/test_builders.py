"""Config -> VMAs for both shipped profiles (the paper one on the meta device: shapes, no memory)."""

import torch

from vmas.config import load_config
from vmas.models.builders import build_vmas


def test_demo_profile_model_runs_forward(repo):
    cfg = load_config(repo / "configs" / "demo.yaml")
    torch.manual_seed(0)
    model = build_vmas(cfg, torch.randn(4, 2048, cfg.codec.dimension)).eval()
    codes = torch.randint(0, 2048, (2, 4, int(cfg.clip.seconds * cfg.codec.frame_rate)))
    out = model(codes, torch.randn(2, 3, cfg.video.frames, cfg.video.size, cfg.video.size))
    assert out.logits.shape == (2, 4, 200, 2048) and out.video.shape == (2, cfg.video.frames, 128)  # time kept
    music, video = model.embeddings(codes, out.video)
    assert music.shape == video.shape == (2, cfg.model.contrastive_dim)


def test_paper_profile_shapes(repo):
    """Hiera-Base-sized encoder -> (48, 768) per 96-frame clip; a MusicGen-medium-sized decoder."""
    cfg = load_config(repo / "configs" / "paper.yaml")
    with torch.device("meta"):
        model = build_vmas(cfg, torch.empty(4, 2048, 128), load_pretrained=False)
        video = model.video_encoder(torch.empty(1, 3, 96, 224, 224))
    assert video.shape == (1, 48, 768)
    decoder = model.music_decoder
    assert (decoder.dim, len(decoder.transformer.layers), decoder.num_codebooks, decoder.card) == (1536, 48, 4, 2048)
    assert 1.7e9 < sum(p.numel() for p in decoder.parameters()) < 1.9e9  # with cross-attention in all 48 layers
