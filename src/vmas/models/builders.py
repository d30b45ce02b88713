"""Config -> objects: the video encoder, the music decoder, the VMAs model around them, and its sampling settings."""

from __future__ import annotations

import logging

import torch

from vmas.config import Config, GenerateConfig
from vmas.models.music_decoder import MusicDecoderSpec, build_music_decoder, load_musicgen_lm
from vmas.models.sample import SamplingSettings
from vmas.models.video_encoder import VideoEncoder, VideoEncoderSpec, load_hiera_weights
from vmas.models.vmas import VMAs

log = logging.getLogger(__name__)


def video_encoder_spec(cfg: Config) -> VideoEncoderSpec:
    e = cfg.model.video_encoder
    return VideoEncoderSpec(frames=cfg.video.frames, size=cfg.video.size, embed_dim=e.embed_dim, num_heads=e.num_heads,
                            stages=tuple(e.stages), q_strides=tuple(tuple(s) for s in e.q_strides),
                            patch_kernel=tuple(e.patch_kernel), patch_stride=tuple(e.patch_stride),
                            patch_padding=tuple(e.patch_padding), mask_unit_size=tuple(e.mask_unit_size),
                            mask_unit_attn=tuple(e.mask_unit_attn), mlp_ratio=e.mlp_ratio)


def music_decoder_spec(cfg: Config) -> MusicDecoderSpec:
    d = cfg.model.music_decoder
    return MusicDecoderSpec(n_q=cfg.codec.n_q, card=cfg.codec.cardinality, dim=d.dim, num_heads=d.num_heads,
                            num_layers=d.num_layers, hidden_scale=d.hidden_scale)


def build_vmas(cfg: Config, codebooks: torch.Tensor, load_pretrained: bool = True) -> VMAs:
    """The VMAs network for ``cfg``; ``codebooks [K, card, D]`` come from the codec the tokens were made with.

    With ``load_pretrained``, ``model.video_encoder.pretrained`` (Hiera) and
    ``model.music_decoder.pretrained`` (MusicGen LM) are loaded when set.
    """
    if codebooks.shape[:2] != (cfg.codec.n_q, cfg.codec.cardinality):
        raise ValueError(f"codebooks {tuple(codebooks.shape)} do not match codec.n_q x codec.cardinality "
                         f"({cfg.codec.n_q} x {cfg.codec.cardinality})")
    spec = video_encoder_spec(cfg)
    encoder = VideoEncoder(spec)
    decoder = build_music_decoder(music_decoder_spec(cfg))
    if load_pretrained and cfg.model.video_encoder.pretrained is not None:
        report = load_hiera_weights(encoder, str(cfg.model.video_encoder.pretrained))
        log.info("video encoder: Hiera weights from %s (%d tensors not in the checkpoint)",
                 cfg.model.video_encoder.pretrained, len(report["missing"]))
    if load_pretrained and cfg.model.music_decoder.pretrained is not None:
        load_musicgen_lm(decoder, cfg.model.music_decoder.pretrained)
    # feature i is centred on frame i x frames_per_feature, at (that / video.fps) s = that many 50 Hz tokens
    tokens_per_feature = spec.frames_per_feature * cfg.codec.frame_rate / cfg.video.fps
    return VMAs(encoder, decoder, codebooks, contrastive_dim=cfg.model.contrastive_dim,
                cfg_dropout=cfg.model.music_decoder.cfg_dropout, tokens_per_feature=tokens_per_feature)


def sampling_settings(g: GenerateConfig) -> SamplingSettings:
    """The ``generate`` section's sampling knobs (guidance, temperature, top-k, top-p): what evaluate and
    generate both sample with."""
    return SamplingSettings(guidance=g.guidance, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
