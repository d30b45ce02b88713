"""Audio embedders for FAD and taggers for KL, chosen by name (``evaluate.embedding``).

- ``musicnn`` (default): the musicnn MagnaTagATune tagger (Pons & Serra, ISC licence) ported to
  torch, with its weights shipped in the package, so nothing is downloaded. The embedding is its
  penultimate layer per 3 s window; the tags are its 50 MagnaTagATune labels.
- ``musicnn:<file>``: the same network with other converted weights (e.g. the MSD tagger).
- ``torchscript:<file>``: any embedding model saved with ``torch.jit.save`` from local weights
  (VGGish, CLAP, ...). It takes ``[1, samples]`` mono float audio at its ``sample_rate`` attribute
  and returns ``[W, D]`` embeddings; a ``tags`` method, if it has one, returns ``[W, C]`` label
  probabilities for KL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class AudioEmbedder(Protocol):
    name: str  # stated in every report: which embedding the FAD and KL numbers mean
    sample_rate: int

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``[n]`` mono audio -> ``[W, D]`` window embeddings."""

    def tags(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """``[n]`` mono audio -> ``[W, C]`` label probabilities, or None without a tagger."""


class TorchScriptEmbedder:
    """A ``torch.jit`` module as an :class:`AudioEmbedder` (see the module docstring for its contract)."""

    def __init__(self, path: str | Path):
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no TorchScript embedding model (evaluate.embedding)")
        try:
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except RuntimeError as exc:
            raise ValueError(f"{self.path}: not a TorchScript module ({exc})") from None
        if not hasattr(self.module, "sample_rate"):
            raise ValueError(f"{self.path}: the module has no sample_rate attribute")
        self.sample_rate = int(self.module.sample_rate)
        self.name = f"torchscript:{self.path.name}"
        self._has_tags = hasattr(self.module, "tags")

    def _input(self, audio: np.ndarray, sample_rate: int):
        import librosa
        import torch

        if sample_rate != self.sample_rate:
            audio = librosa.resample(np.asarray(audio, np.float32), orig_sr=sample_rate, target_sr=self.sample_rate)
        return torch.from_numpy(np.asarray(audio, np.float32))[None]

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.atleast_2d(self.module(self._input(audio, sample_rate)).numpy())

    def tags(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        import torch

        if not self._has_tags:
            return None
        with torch.no_grad():
            return np.atleast_2d(self.module.tags(self._input(audio, sample_rate)).numpy())


def load_embedder(spec: str, device: str = "cpu") -> AudioEmbedder:
    """``musicnn`` | ``musicnn:<file>`` | ``torchscript:<file>`` -> an embedder (local files only)."""
    kind, _, arg = spec.partition(":")
    if kind == "musicnn":
        from vmas.evaluation.musicnn import MusicnnTagger

        return MusicnnTagger.load(arg or None, device=device)
    if kind == "torchscript" and arg:
        return TorchScriptEmbedder(arg)
    raise ValueError(f"evaluate.embedding: unknown embedding {spec!r} (use musicnn, musicnn:<file> or "
                     "torchscript:<file>)")
