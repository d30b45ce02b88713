"""Incremental decoding of the music decoder with a static KV cache and cross-attention computed once.

audiocraft's streaming ``LMModel`` (what ``LMModel.generate`` uses) recomputes every layer's
cross-attention keys and values from the video at every step and grows its self-attention cache
with ``torch.cat``, which copies the whole cache each step. :class:`FastDecoder` runs the same
weights (it holds no parameters of its own) with

- the video's cross-attention keys and values projected once per video, per layer;
- a preallocated self-attention cache ``[B, H, max_steps, d]`` per layer, written in place;
- one fused QKV projection and torch's scaled-dot-product attention per layer and step.

It reproduces the streamed logits of ``LMModel`` (tested to float tolerance), and it is what
:func:`vmas.generation.sample.generate_codes` uses unless asked for audiocraft's path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vmas.models.music_decoder import VIDEO


def _sin_embedding(positions: torch.Tensor, dim: int, max_period: float, dtype: torch.dtype) -> torch.Tensor:
    """audiocraft's ``create_sin_embedding``: ``positions [1, T, 1]`` -> ``[1, T, dim]`` (cos | sin)."""
    half = dim // 2
    positions = positions.to(dtype)
    adim = torch.arange(half, device=positions.device, dtype=dtype).view(1, 1, -1)
    phase = positions / (torch.full([], max_period, device=positions.device, dtype=dtype) ** (adim / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class FastDecoder:
    """Step-wise decoding of an audiocraft ``LMModel`` built by :func:`build_music_decoder`.

    ``start(condition, batch, max_steps)`` projects the video; ``step(tokens [B, K, S])`` returns
    logits ``[B, K, S, card]`` for those ``S`` new sequence steps (``S > 1`` only on the first
    call, e.g. a prompt), continuing where the previous call stopped.
    """

    def __init__(self, lm):
        t = lm.transformer
        if t.positional_embedding != "sin" or any(
                layer.cross_attention is None or not layer.norm_first for layer in t.layers):
            raise ValueError("FastDecoder supports pre-norm LMModels with sin positions and cross-attention")
        self.lm, self.layers = lm, list(t.layers)
        self.dim, self.heads = lm.dim, self.layers[0].self_attn.num_heads
        self.head_dim = self.dim // self.heads
        self.max_period, self.pos_scale = t.max_period, t.positional_scale
        self.offset = 0

    @torch.no_grad()
    def start(self, condition: dict, max_steps: int) -> None:
        """``condition``: ``{"video": ([B, T', D], mask)}`` as ``VMAs.condition`` gives it."""
        cross, _ = condition[VIDEO]
        dummy = torch.zeros(cross.shape[0], 1, self.dim, device=cross.device, dtype=cross.dtype)
        _, cross = self.lm.fuser(dummy, condition)  # adds the cross-attention time positions
        b, dtype, device = cross.shape[0], cross.dtype, cross.device
        self.cross_kv, self.cache = [], []
        for layer in self.layers:
            attn = layer.cross_attention
            w = attn.in_proj_weight
            bias = attn.in_proj_bias
            k = F.linear(cross, w[self.dim : 2 * self.dim], None if bias is None else bias[self.dim : 2 * self.dim])
            v = F.linear(cross, w[2 * self.dim :], None if bias is None else bias[2 * self.dim :])
            self.cross_kv.append((self._heads(k), self._heads(v)))
            shape = (b, self.heads, max_steps, self.head_dim)
            self.cache.append((torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device)))
        self.offset, self.max_steps = 0, max_steps

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, d]
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, K, S]`` (the next ``S`` sequence steps) -> logits ``[B, K, S, card]``."""
        lm, s = self.lm, tokens.shape[-1]
        start, end = self.offset, self.offset + s
        if end > self.max_steps:
            raise ValueError(f"decoding past the {self.max_steps} steps the cache was made for")
        if s > 1 and start > 0:
            raise ValueError("several steps at once only on the first call (a prompt)")
        x = sum(lm.emb[k](tokens[:, k]) for k in range(tokens.shape[1]))  # [B, S, D]
        positions = torch.arange(start, end, device=x.device).view(1, -1, 1)
        x = x + self.pos_scale * _sin_embedding(positions, self.dim, self.max_period, x.dtype)
        for layer, (k_cache, v_cache), (ck, cv) in zip(self.layers, self.cache, self.cross_kv):
            attn = layer.self_attn
            h = layer.norm1(x)
            q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            k_cache[:, :, start:end] = self._heads(k)
            v_cache[:, :, start:end] = self._heads(v)
            a = F.scaled_dot_product_attention(self._heads(q), k_cache[:, :, :end], v_cache[:, :, :end],
                                               is_causal=s > 1)
            x = x + layer.layer_scale_1(attn.out_proj(a.transpose(1, 2).reshape(x.shape)))
            cross = layer.cross_attention
            h = layer.norm_cross(x)
            bias = cross.in_proj_bias
            q = F.linear(h, cross.in_proj_weight[: self.dim], None if bias is None else bias[: self.dim])
            a = F.scaled_dot_product_attention(self._heads(q), ck, cv)
            x = x + layer.layer_scale_cross(cross.out_proj(a.transpose(1, 2).reshape(x.shape)))
            x = x + layer.layer_scale_2(layer._ff_block(layer.norm2(x)))
        if lm.out_norm is not None:
            x = lm.out_norm(x)
        self.offset = end
        return torch.stack([lm.linears[k](x) for k in range(tokens.shape[1])], dim=1)
