"""VMAs: video encoder -> projected video features -> music decoder, plus the contrastive heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vmas.models.music_decoder import VIDEO
from vmas.modules.losses import music_features


NORM_MOMENTUM = 0.5  # running statistics of the contrastive features follow the last few batches


@dataclass
class VMAsOutput:
    logits: torch.Tensor  # [B, K, T, card], aligned with the codes (NaN where the delay pattern is invalid)
    mask: torch.Tensor  # [B, K, T] valid predictions
    video: torch.Tensor  # [B, T', Dv] encoder features (before projection)
    conditioned: torch.Tensor  # [B] bool: False where the video was dropped (classifier-free guidance)


def time_positions(steps: int, tokens_per_feature: float | None, device: torch.device | None = None) -> torch.Tensor:
    """Positions ``[1, T', 1]`` of the video features on the decoder's token axis.

    Video feature ``i`` is centred on frame ``i x temporal stride``, that is on music token
    ``i x tokens_per_feature``; giving it that position (instead of its index ``i``) puts a video
    feature and the music tokens of the same instant at the same sinusoidal position, so
    cross-attention can find "now" in the video. ``None`` keeps the index (audiocraft's default).
    """
    index = torch.arange(steps, device=device, dtype=torch.float32)
    return (index if tokens_per_feature is None else index * tokens_per_feature).view(1, -1, 1)


class VMAs(nn.Module):
    """The network, free of training-loop code.

    ``video_encoder`` maps ``frames [B, 3, F, H, W]`` to ``[B, T', Dv]``; ``music_decoder`` is an
    audiocraft ``LMModel`` with a ``video`` cross-attention condition (its fuser adds no positions:
    :meth:`condition` does, at token time, see :func:`time_positions`); ``codebooks [K, card, Dc]``
    are the codec's (frozen) tables, which turn predicted distributions into music features for
    the contrastive loss. ``cfg_dropout`` is the share of samples trained without video.
    ``tokens_per_feature`` is how many music tokens one video feature spans (50 Hz tokens, video
    features at ``fps / temporal stride``).
    """

    def __init__(self, video_encoder: nn.Module, music_decoder: nn.Module, codebooks: torch.Tensor,
                 contrastive_dim: int = 256, cfg_dropout: float = 0.1, tokens_per_feature: float | None = None):
        super().__init__()
        self.video_encoder = video_encoder
        self.music_decoder = music_decoder
        dim = music_decoder.dim
        self.video_proj = nn.Linear(video_encoder.out_dim, dim)
        self.register_buffer("codebooks", codebooks.detach().clone(), persistent=True)
        # Pooled features of different clips share a large common part (for an unsure decoder the
        # expected codebook entry is nearly the mean entry for every clip): centring over the batch
        # removes it, and heads without bias cannot add one back. At evaluation the running
        # statistics centre; a high momentum lets them follow the features as they move in training.
        self.music_norm = nn.BatchNorm1d(codebooks.shape[-1], affine=False, momentum=NORM_MOMENTUM)
        self.music_head = nn.Linear(codebooks.shape[-1], contrastive_dim, bias=False)
        self.video_norm = nn.BatchNorm1d(video_encoder.out_dim, affine=False, momentum=NORM_MOMENTUM)
        self.video_head = nn.Linear(video_encoder.out_dim, contrastive_dim, bias=False)
        self.cfg_dropout = cfg_dropout
        self.tokens_per_feature = tokens_per_feature

    @property
    def num_codebooks(self) -> int:
        return self.music_decoder.num_codebooks

    @property
    def card(self) -> int:
        return self.music_decoder.card

    def condition(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> dict:
        """Cross-attention condition from encoder features ``[B, T', Dv]``; rows with ``keep`` False are nulled.

        The projected features ``[B, T', D]`` get sinusoidal positions at token time; a nulled row
        keeps only the positions, so it carries no video information.
        """
        from audiocraft.modules.transformer import create_sin_embedding

        projected = self.video_proj(video)
        if keep is not None:
            projected = projected * keep[:, None, None].to(projected.dtype)
        positions = time_positions(projected.shape[1], self.tokens_per_feature, projected.device)
        projected = projected + create_sin_embedding(positions, projected.shape[-1]).to(projected.dtype)
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

    def music_embedding(self, codes: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """The music side of the contrastive loss, blind to the video: ``codes [B, K, T] -> [B, C]``.

        The paper's features (softmax of the decoder's teacher-forced logits x the codec's
        codebooks, mean-pooled over time), from a pass with the video *nulled*, so InfoNCE cannot be
        met by passing the video's identity through cross-attention. ``video [B, T', Dv]`` only
        sets the shape of the nulled condition. Training and evaluation both call this.
        """
        nulled = torch.zeros(codes.shape[0], dtype=torch.bool, device=codes.device)
        out = self.music_decoder.compute_predictions(codes, [], self.condition(video, nulled))
        return self.music_head(self.music_norm(music_features(out.logits, out.mask, self.codebooks)))

    def video_embedding(self, video: torch.Tensor) -> torch.Tensor:
        """The video side: encoder features ``[B, T', Dv]`` mean-pooled, centred, projected: ``[B, C]``."""
        return self.video_head(self.video_norm(video.float().mean(dim=1)))

    def embeddings(self, codes: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(music, video) embeddings ``[B, contrastive_dim]`` for the contrastive loss and retrieval."""
        return self.music_embedding(codes, video), self.video_embedding(video)
