"""``Codec``: the small interface the rest of vmas uses over an EnCodec compression model."""

from __future__ import annotations

import torch
from torch import nn


class Codec(nn.Module):
    """EnCodec as vmas needs it: mono audio <-> ``K`` streams of codes at ``frame_rate`` Hz.

    Wraps an audiocraft ``CompressionModel`` (``EncodecModel`` trained here or loaded from an
    audiocraft checkpoint, or ``HFEncodecCompressionModel`` around a transformers EnCodec).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.num_codebooks)

    @property
    def cardinality(self) -> int:
        return int(self.model.cardinality)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav: [B, 1, T]`` float at ``sample_rate`` -> ``codes: [B, K, ceil(T / hop)]`` int64 in ``[0, cardinality)``."""
        codes, scale = self.model.encode(wav)
        if scale is not None:
            raise ValueError("renormalising codecs are not supported: their scale is not part of the codes")
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes: [B, K, S]`` -> ``wav: [B, 1, S * hop]``."""
        return self.model.decode(codes.long(), None)

    def codebook_embeddings(self) -> torch.Tensor:
        """The residual codebooks, ``[K, cardinality, D]`` (the contrastive loss projects logits onto them)."""
        quantizer = getattr(self.model, "quantizer", None) or self.model.model.quantizer
        layers = quantizer.vq.layers if hasattr(quantizer, "vq") else quantizer.layers
        tables = [layer.codebook if hasattr(layer, "codebook") and torch.is_tensor(layer.codebook)
                  else layer.codebook.embed for layer in layers[: self.num_codebooks]]
        return torch.stack([t.detach() for t in tables])
