"""The two VMAs losses: beat-weighted token cross-entropy and the global video-music contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def beat_weighted_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor,
                                weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of ``codes`` under ``logits``, each step weighted by its beat weight.

    ``logits: [B, K, T, card]`` (NaN where the delay pattern has no valid prediction),
    ``codes: [B, K, T]``, ``mask: [B, K, T]`` (valid steps), ``weights: [B, T]`` or None.
    Per codebook: ``sum(w * ce) / sum(w)`` over valid steps; then the mean over codebooks, as
    audiocraft's MusicGen solver averages its per-codebook CE. With all weights equal (or None)
    this is exactly that plain loss.
    """
    B, K, T, card = logits.shape
    valid = mask.bool()
    safe = torch.where(valid[..., None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    ce = F.cross_entropy(safe.reshape(-1, card).float(), codes.reshape(-1).long(), reduction="none").view(B, K, T)
    w = valid.to(ce.dtype)
    if weights is not None:
        w = w * weights[:, None, :].to(ce.dtype)
    per_codebook = (ce * w).sum(dim=(0, 2)) / w.sum(dim=(0, 2)).clamp_min(1e-8)
    return per_codebook.mean()


def music_features(logits: torch.Tensor, mask: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Soft codec latents from the decoder's predictions, mean-pooled over time: ``[B, D]``.

    ``softmax(logits) [B, K, T, card] x codebooks [K, card, D]`` gives each codebook's expected
    entry; the residual codebooks add up (as RVQ decodes), and valid steps are averaged.
    """
    valid = mask.bool()
    probs = torch.where(valid[..., None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    probs = probs.float().softmax(dim=-1)
    expected = torch.einsum("bktc,kcd->bktd", probs, codebooks.float())  # [B, K, T, D]
    steps = valid.all(dim=1)  # [B, T]: steps where every codebook is valid
    latent = expected.sum(dim=1) * steps[..., None]
    return latent.sum(dim=1) / steps.sum(dim=1, keepdim=True).clamp_min(1)


def contrastive_loss(music: torch.Tensor, video: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE over the batch with cosine similarity: ``[B, D] x [B, D] -> scalar``.

    Pair ``i`` (music ``i``, video ``i``) is the positive; every other pairing in the batch is a
    negative, in both directions (music -> video and video -> music).
    """
    if music.shape[0] < 2:
        return music.new_zeros(())
    similarity = F.normalize(music.float(), dim=-1) @ F.normalize(video.float(), dim=-1).T / temperature
    target = torch.arange(music.shape[0], device=music.device)
    return 0.5 * (F.cross_entropy(similarity, target) + F.cross_entropy(similarity.T, target))
