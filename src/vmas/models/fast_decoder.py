"""Incremental decoding of the music decoder with a static KV cache and cross-attention computed once.

audiocraft's streaming ``LMModel`` (what ``LMModel.generate`` uses) recomputes every layer's
cross-attention keys and values from the video at every step and grows its self-attention cache
with ``torch.cat``, which copies the whole cache each step. :class:`FastDecoder` runs the same
weights (it holds no parameters of its own) with

- the video's cross-attention keys and values projected once per video, per layer;
- a preallocated self-attention cache ``[B, H, max_steps, d]`` per layer, written in place;
- one fused QKV projection and torch's scaled-dot-product attention per layer and step;
- with ``static=True``, single steps of fixed shapes (the cache written with ``index_copy_`` at a
  position held in a tensor, attention over the whole cache under a mask), which a CUDA graph can
  capture once and replay every step (``cuda_graph=True``, on CUDA devices only), removing the
  per-kernel launch cost that dominates small batches on a GPU.

It reproduces the streamed logits of ``LMModel`` (tested to float tolerance), and it is what
:func:`vmas.models.sample.generate_codes` uses unless asked for audiocraft's path.
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

    def __init__(self, lm, static: bool = False, cuda_graph: bool = False):
        t = lm.transformer
        if t.positional_embedding != "sin" or any(
                layer.cross_attention is None or not layer.norm_first for layer in t.layers):
            raise ValueError("FastDecoder supports pre-norm LMModels with sin positions and cross-attention")
        self.lm, self.layers = lm, list(t.layers)
        self.dim, self.heads = lm.dim, self.layers[0].self_attn.num_heads
        self.head_dim = self.dim // self.heads
        self.max_period, self.pos_scale = t.max_period, t.positional_scale
        self.offset = 0
        self.static, self.cuda_graph = static or cuda_graph, cuda_graph
        self._graph = None

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
            # zeros, not empty: the static step attends over the whole cache, masked (0 x NaN would be NaN)
            self.cache.append((torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device)))
        self.offset, self.max_steps, self._graph = 0, max_steps, None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, d]
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, K, S]`` (the next ``S`` sequence steps) -> logits ``[B, K, S, card]``."""
        s = tokens.shape[-1]
        start, end = self.offset, self.offset + s
        if end > self.max_steps:
            raise ValueError(f"decoding past the {self.max_steps} steps the cache was made for")
        if s > 1 and start > 0:
            raise ValueError("several steps at once only on the first call (a prompt)")
        if self.static and s == 1:
            logits = self._replay(tokens) if self.cuda_graph and tokens.is_cuda else \
                self._static_step(tokens, torch.tensor([start], device=tokens.device))
        else:
            logits = self._dynamic_step(tokens, start, end)
        self.offset = end
        return logits

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token embeddings summed over codebooks plus the sin positions ``[1, S, 1]`` -> ``[B, S, D]``."""
        x = sum(self.lm.emb[k](tokens[:, k]) for k in range(tokens.shape[1]))
        return x + self.pos_scale * _sin_embedding(positions, self.dim, self.max_period, x.dtype)

    def _layers(self, x: torch.Tensor, attend) -> torch.Tensor:
        """Every layer on ``x [B, S, D]``; ``attend(i, q, k, v)`` stores ``k, v`` and returns self-attention."""
        for i, (layer, (ck, cv)) in enumerate(zip(self.layers, self.cross_kv)):
            attn = layer.self_attn
            q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            a = attend(i, self._heads(q), self._heads(k), self._heads(v))
            x = x + layer.layer_scale_1(attn.out_proj(a.transpose(1, 2).reshape(x.shape)))
            cross = layer.cross_attention
            bias = cross.in_proj_bias
            q = F.linear(layer.norm_cross(x), cross.in_proj_weight[: self.dim], None if bias is None else bias[: self.dim])
            a = F.scaled_dot_product_attention(self._heads(q), ck, cv)
            x = x + layer.layer_scale_cross(cross.out_proj(a.transpose(1, 2).reshape(x.shape)))
            x = x + layer.layer_scale_2(layer._ff_block(layer.norm2(x)))
        if self.lm.out_norm is not None:
            x = self.lm.out_norm(x)
        return torch.stack([self.lm.linears[k](x) for k in range(len(self.lm.linears))], dim=1)

    def _dynamic_step(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        def attend(i, q, k, v):
            k_cache, v_cache = self.cache[i]
            k_cache[:, :, start:end], v_cache[:, :, start:end] = k, v
            return F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end], is_causal=end - start > 1)

        positions = torch.arange(start, end, device=tokens.device).view(1, -1, 1)
        return self._layers(self._embed(tokens, positions), attend)

    def _static_step(self, tokens: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One step, every shape fixed: ``position [1]`` (long, on the device) says where it is."""
        visible = (torch.arange(self.max_steps, device=tokens.device) <= position).view(1, 1, 1, -1)

        def attend(i, q, k, v):
            k_cache, v_cache = self.cache[i]
            k_cache.index_copy_(2, position, k)
            v_cache.index_copy_(2, position, v)
            return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=visible)

        return self._layers(self._embed(tokens, position.view(1, 1, 1)), attend)

    def _replay(self, tokens: torch.Tensor) -> torch.Tensor:
        """The static step as a CUDA graph: captured on the first single step, replayed after."""
        if self._graph is None:
            self._tokens, self._position = tokens.clone(), torch.tensor([self.offset], device=tokens.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the graph (it writes this step's own k, v: harmless)
                self._static_step(self._tokens, self._position)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._logits = self._static_step(self._tokens, self._position)
        self._tokens.copy_(tokens)
        self._position.fill_(self.offset)
        self._graph.replay()
        return self._logits.clone()
