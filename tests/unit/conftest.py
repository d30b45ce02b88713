"""Shared unit-test fixtures: a few tokenized clips in the real formats, with tiny models."""

import numpy as np
import pytest
import torch

from vmas.codec import build_encodec, encodec_xp_config, save_codec
from vmas.config import load_config
from vmas.curation import STAGES
from vmas.io import file_sha256
from vmas.layout import manifest_dir
from vmas.manifest import Manifest
from vmas.media import write_mp4

CARD = 32
TINY = ["codec.cardinality=32", "model.music_decoder.dim=32", "model.music_decoder.num_layers=2",
        "model.music_decoder.num_heads=2", "model.video_encoder.embed_dim=8", "model.contrastive_dim=16",
        "train.batch_size=4", "train.num_workers=0", "train.val_share=0", "train.ema_decay=0",
        "train.warmup_steps=2", "train.lr=0.003", "train.accelerator=cpu", "train.data=files"]


@pytest.fixture
def token_set(tmp_path, repo):
    """6 clips (3 videos x 2) of patterned codes, beat weights and training videos of the demo's frames and size."""
    cfg = load_config(repo / "configs" / "demo.yaml",
                      overrides=[f"paths.artifacts_dir={tmp_path / 'artifacts'}", *TINY])
    torch.manual_seed(0)
    xp = encodec_xp_config(n_filters=2, dimension=16, lstm=0, bins=CARD)
    codec_file = tmp_path / "codec.bin"
    save_codec(build_encodec(xp), xp, codec_file)
    cfg = cfg.model_copy(update={"codec": cfg.codec.model_copy(update={"pretrained": codec_file})})
    rng = np.random.default_rng(0)
    rows = []
    for v in range(3):
        for k in range(2):
            cid, i = f"video{v}/{k:04d}", 2 * v + k
            codes = (np.arange(200)[None, :] * (i + 1) + np.arange(4)[:, None] * 5 + i) % CARD
            weights = np.where(rng.random(200) < 0.2, 1.0, 0.5).astype(np.float32)
            tokens = tmp_path / f"v{v}-{k}.npz"
            np.savez(tokens, codes=codes.astype(np.int16), beat_weights=weights)
            size = cfg.video.size
            frames = [np.full((size, size, 3), (40 * i + 10 * f) % 255, np.uint8) for f in range(cfg.video.frames)]
            write_mp4(tmp_path / f"v{v}-{k}.mp4", frames, cfg.video.fps)
            rows.append({"id": cid, "input_id": cid, "key": "k", "error": None, "video_id": f"video{v}",
                         "video_path": str(tmp_path / f"v{v}-{k}.mp4"), "audio_path": "", "tokens_path": str(tokens),
                         "num_codebooks": 4, "num_steps": 200, "token_rate": 50, "beat_weights": weights.tolist(),
                         "codec_sha256": file_sha256(codec_file)})
    Manifest(manifest_dir(cfg, "tokenize"), STAGES["tokenize"].schema).append(rows)
    return cfg


