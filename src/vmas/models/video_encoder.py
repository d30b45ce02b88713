"""The temporal video encoder: a Hiera-style hierarchical ViT that pools space but keeps time.

Frames ``[B, 3, F, H, W]`` are cut into tokens by a 3D convolution (kernel 3x7x7, stride 2x4x4,
padding 1x3x3 in the paper), given separable space and time position embeddings, and pass through
stages of transformer blocks. The first block of each later stage doubles the width and heads and
max-pools the *queries* (and its residual) by that stage's ``(t, h, w)`` stride: VMAs uses
``(1, 4, 4), (1, 7, 7), (1, 2, 2)`` instead of Hiera's 2, so the 56 x 56 token grid of a 224 px
frame ends at 1 x 1 while all ``F / 2`` time steps survive. Early stages attend within mask units
(local windows of ``mask_unit_size`` tokens, shrinking with each pool), later ones globally, as in
Hiera. The output is one feature per frame pair: ``[B, F / 2, D]`` (``(48, 768)`` for 96 frames).

Parameter names follow the Hiera reference code (``patch_embed.proj``, ``pos_embed_spatial``,
``blocks.N.attn.qkv`` ...), so a Hiera checkpoint loads by name; see :func:`adapt_hiera_state_dict`.
Tokens are kept on their ``[T, H, W]`` grid here rather than Hiera's unrolled order, which changes
no weight, only how pooling and windows are indexed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class VideoEncoderSpec:
    """Shape of the encoder (what :class:`vmas.config.VideoEncoderConfig` holds, plus the input)."""

    frames: int
    size: int
    embed_dim: int
    num_heads: int
    stages: Sequence[int]
    q_strides: Sequence[Triple]
    patch_kernel: Triple = (3, 7, 7)
    patch_stride: Triple = (2, 4, 4)
    patch_padding: Triple = (1, 3, 3)
    mask_unit_size: Triple = (1, 8, 8)
    mask_unit_attn: Sequence[bool] = field(default_factory=lambda: (True, True, False, False))
    mlp_ratio: float = 4.0

    @property
    def token_grid(self) -> Triple:
        """``(T, H, W)`` after the patch embedding."""
        def out(n, k, s, p):
            return (n + 2 * p - k) // s + 1
        return (out(self.frames, self.patch_kernel[0], self.patch_stride[0], self.patch_padding[0]),
                out(self.size, self.patch_kernel[1], self.patch_stride[1], self.patch_padding[1]),
                out(self.size, self.patch_kernel[2], self.patch_stride[2], self.patch_padding[2]))

    @property
    def frames_per_feature(self) -> int:
        """Input frames per output time step: the patch embedding's temporal stride times the Q-pooling's."""
        return self.patch_stride[0] * math.prod(s[0] for s in self.q_strides)

    @property
    def out_dim(self) -> int:
        return self.embed_dim * 2 ** (len(self.stages) - 1)


def pool_grid(x: torch.Tensor, stride: Triple) -> torch.Tensor:
    """Max over each ``stride`` block of a token grid: ``[B, T, H, W, C] -> [B, T/st, H/sh, W/sw, C]``."""
    if stride == (1, 1, 1):
        return x
    B, T, H, W, C = x.shape
    st, sh, sw = stride
    x = x.view(B, T // st, st, H // sh, sh, W // sw, sw, C)
    return x.amax(dim=(2, 4, 6))


def _windows(x: torch.Tensor, unit: Triple) -> torch.Tensor:
    """``[B, T, H, W, C] -> [B, nW, ut, uh, uw, C]``: the grid cut into ``unit``-sized windows."""
    B, T, H, W, C = x.shape
    ut, uh, uw = unit
    x = x.view(B, T // ut, ut, H // uh, uh, W // uw, uw, C).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(B, -1, ut, uh, uw, C)


def _unwindow(x: torch.Tensor, grid: Triple) -> torch.Tensor:
    """Inverse of :func:`_windows` for ``[B, nW, ut, uh, uw, C]`` on a ``grid = (T, H, W)``."""
    B, _, ut, uh, uw, C = x.shape
    T, H, W = grid
    x = x.view(B, T // ut, H // uh, W // uw, ut, uh, uw, C).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(B, T, H, W, C)


class MaskUnitAttention(nn.Module):
    """Attention within mask units (or over the whole grid), with max-pooled queries.

    ``x: [B, T, H, W, dim] -> [B, T/st, H/sh, W/sw, dim_out]``. Keys and values keep the full
    resolution; queries are pooled by ``q_stride`` inside each unit, as in Hiera.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, q_stride: Triple, window: Triple | None):
        super().__init__()
        self.heads, self.q_stride, self.window = heads, q_stride, window
        self.head_dim = dim_out // heads
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H, W, _ = x.shape
        # A pre-pool unit is the post-pool window times the stride; global attention is one unit.
        unit = tuple(w * s for w, s in zip(self.window, self.q_stride)) if self.window else (T, H, W)
        unit = tuple(min(u, n) for u, n in zip(unit, (T, H, W)))
        qkv = _windows(self.qkv(x), unit)  # [B, nW, ut, uh, uw, 3 * dim_out]
        nW = qkv.shape[1]
        q, k, v = qkv.chunk(3, dim=-1)
        q = pool_grid(q.reshape(B * nW, *unit, -1), self.q_stride)  # [B*nW, ut', uh', uw', dim_out]
        pooled = q.shape[1:4]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(B * nW, -1, self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # [B*nW, heads, Nq, head_dim]
        out = out.transpose(1, 2).reshape(B, nW, *pooled, -1)
        grid = (T // self.q_stride[0], H // self.q_stride[1], W // self.q_stride[2])
        return self.proj(_unwindow(out, grid))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class HieraBlock(nn.Module):
    """Pre-norm transformer block; when it widens, its residual is projected and pooled like the queries."""

    def __init__(self, dim: int, dim_out: int, heads: int, mlp_ratio: float, q_stride: Triple,
                 window: Triple | None):
        super().__init__()
        self.dim, self.dim_out, self.q_stride = dim, dim_out, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskUnitAttention(dim, dim_out, heads, q_stride, window)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = pool_grid(self.proj(x_norm), self.q_stride)
        x = x + self.attn(x_norm)
        return x + self.mlp(self.norm2(x))


class VideoEncoder(nn.Module):
    """``frames: [B, 3, F, H, W]`` (normalised RGB) -> ``features: [B, F / 2, out_dim]``."""

    def __init__(self, spec: VideoEncoderSpec):
        super().__init__()
        self.spec = spec
        grid = spec.token_grid
        if len(spec.q_strides) != len(spec.stages) - 1:
            raise ValueError("one q_stride per stage transition")
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, spec.embed_dim, spec.patch_kernel, spec.patch_stride, spec.patch_padding)
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, grid[1] * grid[2], spec.embed_dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, grid[0], spec.embed_dim))
        nn.init.trunc_normal_(self.pos_embed_spatial, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_temporal, std=0.02)

        blocks, dim, heads = [], spec.embed_dim, spec.num_heads
        window: Triple | None = tuple(spec.mask_unit_size)
        cumulative = (1, 1, 1)
        flags = list(spec.mask_unit_attn) + [False] * len(spec.stages)
        for stage, depth in enumerate(spec.stages):
            for j in range(depth):
                first = stage > 0 and j == 0
                stride = tuple(spec.q_strides[stage - 1]) if first else (1, 1, 1)
                # Hiera lags the attention kind by one block: the pooling block still uses the
                # previous stage's kind, on the window shrunk by the stride.
                use_units = flags[stage - 1] if first else flags[stage]
                if first:
                    cumulative = tuple(c * s for c, s in zip(cumulative, stride))
                unit = tuple(max(m // c, 1) for m, c in zip(spec.mask_unit_size, cumulative))
                window = unit if use_units else None
                dim_out = dim * 2 if first else dim
                heads = heads * 2 if first else heads
                blocks.append(HieraBlock(dim, dim_out, heads, spec.mlp_ratio, stride, window))
                dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._check_grid(grid)

    def _check_grid(self, grid: Triple) -> None:
        t, h, w = grid
        for i, (st, sh, sw) in enumerate(self.spec.q_strides):
            if t % st or h % sh or w % sw:
                raise ValueError(f"q_strides[{i}] = {(st, sh, sw)} does not divide the {t}x{h}x{w} token grid")
            t, h, w = t // st, h // sh, w // sw

    @property
    def out_dim(self) -> int:
        return self.spec.out_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(frames)  # [B, C, T, H, W]
        B, C, T, H, W = x.shape
        x = x.permute(0, 2, 3, 4, 1)  # [B, T, H, W, C]
        pos = (self.pos_embed_spatial.view(1, 1, H, W, C) + self.pos_embed_temporal.view(1, T, 1, 1, C))
        x = x + pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x.mean(dim=(2, 3)))  # [B, T, D]: pool what is left of space, keep time


def adapt_hiera_state_dict(state: dict[str, torch.Tensor], model: VideoEncoder) -> dict[str, torch.Tensor]:
    """A Hiera checkpoint's tensors reshaped for ``model``; what cannot be used is left out.

    - ``model_state`` / ``state_dict`` wrappers are unwrapped; the classification ``head.*`` and
      ``norm`` of Hiera's pooled head are dropped (this encoder keeps time and has its own norm).
    - ``pos_embed_temporal`` ``[1, T0, C]`` is linearly interpolated to this encoder's ``T``
      (Hiera-Base 16x224 has 8 steps; 96 frames need 48); ``pos_embed_spatial`` ``[1, H0*W0, C]``
      is bicubically resized when the frame size differs.
    - Everything else must match by name and shape, or is left out (reported by the loader).
    """
    for key in ("model_state", "state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    own = model.state_dict()
    out = {}
    for name, tensor in state.items():
        if name.startswith("head.") or name not in own:
            continue
        target = own[name]
        if name == "pos_embed_temporal" and tensor.shape != target.shape:
            tensor = F.interpolate(tensor.transpose(1, 2), size=target.shape[1], mode="linear",
                                   align_corners=False).transpose(1, 2)
        elif name == "pos_embed_spatial" and tensor.shape != target.shape:
            side0, side = int(math.isqrt(tensor.shape[1])), int(math.isqrt(target.shape[1]))
            grid = tensor.reshape(1, side0, side0, -1).permute(0, 3, 1, 2)
            tensor = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
            tensor = tensor.permute(0, 2, 3, 1).reshape(1, side * side, -1)
        if tensor.shape == target.shape:
            out[name] = tensor
    return out


def load_hiera_weights(model: VideoEncoder, path: str) -> dict[str, list[str]]:
    """Load a local Hiera checkpoint into ``model``; returns the ``missing``/``unused`` names."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    adapted = adapt_hiera_state_dict(state, model)
    result = model.load_state_dict(adapted, strict=False)
    raw = state.get("model_state", state) if isinstance(state, dict) else state
    unused = sorted(set(raw) - set(adapted))
    if not adapted:
        raise ValueError(f"{path}: no tensor matches the video encoder (is it a Hiera checkpoint?)")
    return {"missing": sorted(result.missing_keys), "unused": unused}
