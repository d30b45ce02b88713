"""The music decoder: audiocraft's ``LMModel`` (MusicGen's transformer) cross-attending to video.

Every layer has causal self-attention over the delayed codebook sequence (MusicGen's delay
pattern: codebook ``k`` is shifted right by ``k`` steps, so all ``K`` codebooks are predicted in
one pass per step), then cross-attention to the projected video features (with sinusoidal positions at
token time, added by ``VMAs.condition``; audiocraft's fuser adds none), then the feed-forward block. The video is
given as a condition tensor named ``video`` through the ``cross`` fuse; there is no text.

MusicGen's own LM weights load from a local ``state_dict.bin`` (:func:`load_musicgen_lm`): the
token embeddings, self-attention, feed-forward and output heads are taken; MusicGen's text
conditioner and its cross-attention are not (the video cross-attention is initialised fresh).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

VIDEO = "video"


@dataclass(frozen=True)
class MusicDecoderSpec:
    n_q: int = 4
    card: int = 2048
    dim: int = 1536
    num_heads: int = 24
    num_layers: int = 48
    hidden_scale: int = 4
    dropout: float = 0.0  # MusicGen trains without dropout


def build_music_decoder(spec: MusicDecoderSpec):
    """An ``audiocraft.models.lm.LMModel`` shaped as MusicGen's LM (pre-norm, no biases, sin positions)."""
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider

    return LMModel(
        pattern_provider=DelayedPatternProvider(n_q=spec.n_q),
        condition_provider=ConditioningProvider({}),
        fuser=ConditionFuser({"cross": [VIDEO], "prepend": [], "sum": [], "input_interpolate": []},
                             cross_attention_pos_emb=False),  # VMAs.condition adds them, at token time
        n_q=spec.n_q, card=spec.card, dim=spec.dim, num_heads=spec.num_heads, num_layers=spec.num_layers,
        hidden_scale=spec.hidden_scale, norm="layer_norm", norm_first=True, bias_proj=False, bias_ff=False,
        bias_attn=False, causal=True, cross_attention=True, positional_embedding="sin",
        weight_init="gaussian", depthwise_init="current", zero_bias_init=True,
        # audiocraft's "memory efficient" attention is torch's scaled_dot_product_attention (its default
        # backend), on CPU and GPU; it also names the weights as MusicGen's checkpoints do.
        memory_efficient=True, cfg_dropout=0.0, dropout=spec.dropout,
    )


def is_fresh(name: str) -> bool:
    """Parameters that never come from a MusicGen checkpoint: the text conditioner and cross-attention."""
    return name.startswith("condition_provider.") or ".cross_attention." in name or ".norm_cross." in name


def load_musicgen_lm(lm, path: str | Path) -> dict[str, list[str]]:
    """Load MusicGen LM weights (audiocraft's ``state_dict.bin``: ``{"best_state", "xp.cfg"}``) into ``lm``.

    Returns ``{"loaded": [...], "fresh": [...]}``. Any other mismatch (a different width, depth or
    codebook count) is an error naming the first offending tensors.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "state_dict.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no MusicGen LM checkpoint (model.music_decoder.pretrained)")
    package = torch.load(path, map_location="cpu", weights_only=False)
    state = package.get("best_state", package) if isinstance(package, dict) else package
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a solver checkpoint keeps the LM under best_state.model
    own = lm.state_dict()
    take = {k: v for k, v in state.items() if not is_fresh(k)}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in take.items() if k in own and v.shape != own[k].shape]
    unknown = [k for k in take if k not in own]
    missing = [k for k in own if not is_fresh(k) and k not in take]
    if wrong or unknown or missing:
        problems = wrong[:3] + [f"unexpected {k}" for k in unknown[:3]] + [f"missing {k}" for k in missing[:3]]
        raise ValueError(f"{path}: not a MusicGen LM of this shape: {'; '.join(problems)}")
    lm.load_state_dict(take, strict=False)
    fresh = sorted(k for k in own if is_fresh(k))
    log.info("loaded %d MusicGen LM tensors from %s; %d fresh (video cross-attention)", len(take), path, len(fresh))
    return {"loaded": sorted(take), "fresh": fresh}
