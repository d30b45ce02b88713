"""VMAs: video encoder -> projected video features -> music decoder, plus the contrastive heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vmas.models.music_decoder import VIDEO
from vmas.modules.losses import music_features


@dataclass
class VMAsOutput:
    logits: torch.Tensor  # [B, K, T, card], aligned with the codes (NaN where the delay pattern is invalid)
    mask: torch.Tensor  # [B, K, T] valid predictions
    video: torch.Tensor  # [B, T', Dv] encoder features (before projection)
    conditioned: torch.Tensor  # [B] bool: False where the video was dropped (classifier-free guidance)


class VMAs(nn.Module):
    """The network, free of training-loop code.

    ``video_encoder`` maps ``frames [B, 3, F, H, W]`` to ``[B, T', Dv]``; ``music_decoder`` is an
    audiocraft ``LMModel`` with a ``video`` cross-attention condition; ``codebooks [K, card, Dc]``
    are the codec's (frozen) tables, which turn predicted distributions into music features for
    the contrastive loss. ``cfg_dropout`` is the share of samples trained without video.
    """

    def __init__(self, video_encoder: nn.Module, music_decoder: nn.Module, codebooks: torch.Tensor,
                 contrastive_dim: int = 256, cfg_dropout: float = 0.1):
        super().__init__()
        self.video_encoder = video_encoder
        self.music_decoder = music_decoder
        dim = music_decoder.dim
        self.video_proj = nn.Linear(video_encoder.out_dim, dim)
        self.register_buffer("codebooks", codebooks.detach().clone(), persistent=True)
        self.music_head = nn.Linear(codebooks.shape[-1], contrastive_dim)
        self.video_head = nn.Linear(video_encoder.out_dim, contrastive_dim)
        self.cfg_dropout = cfg_dropout

    @property
    def num_codebooks(self) -> int:
        return self.music_decoder.num_codebooks

    @property
    def card(self) -> int:
        return self.music_decoder.card

    def condition(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> dict:
        """Cross-attention condition from encoder features ``[B, T', Dv]``; rows with ``keep`` False are nulled."""
        projected = self.video_proj(video)
        if keep is not None:
            projected = projected * keep[:, None, None].to(projected.dtype)
        return {VIDEO: (projected, torch.ones(projected.shape[:2], device=projected.device))}

    def forward(self, codes: torch.Tensor, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VMAsOutput:
        """``codes [B, K, T]``, ``frames [B, 3, F, H, W]`` -> logits for every code, teacher-forced.

        ``keep [B]`` (bool) says which samples see their video; None keeps all. Training code draws
        it with probability ``1 - cfg_dropout``.
        """
        video = self.video_encoder(frames)
        if keep is None:
            keep = torch.ones(codes.shape[0], dtype=torch.bool, device=codes.device)
        out = self.music_decoder.compute_predictions(codes, [], self.condition(video, keep))
        return VMAsOutput(out.logits, out.mask, video, keep)

    def embeddings(self, output: VMAsOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(music, video) embeddings ``[B, contrastive_dim]`` for the contrastive loss."""
        music = self.music_head(music_features(output.logits, output.mask, self.codebooks))
        return music, self.video_head(output.video.mean(dim=1))
