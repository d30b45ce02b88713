"""Training an EnCodec on clip audio with Lightning: random segments in, reconstruction losses out.

The network is injected (an audiocraft ``EncodecModel`` from :func:`vmas.codec.build_encodec`), so
this module holds only the training loop's pieces: the segment dataset, the losses and the
optimiser. Losses follow audiocraft's EnCodec solver without the adversary: waveform L1,
multi-scale mel (audiocraft's ``MultiScaleMelSpectrogramLoss``), negative SI-SNR, and the RVQ
commitment penalty; the codebooks themselves learn by k-means init and EMA, as in audiocraft.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from vmas.codec.quality import si_snr


class AudioSegments(Dataset):
    """``length`` random mono segments ``[1, segment]`` drawn from WAV files, reading only the segment.

    Item ``i`` is the same segment on every run (its randomness is seeded by ``(seed, i)``), so a
    training run is repeatable; files shorter than a segment are zero-padded.
    """

    def __init__(self, paths: Sequence[str | Path], segment: int, length: int, seed: int = 0):
        if not paths:
            raise ValueError("no audio files to train on")
        self.paths = [str(p) for p in paths]
        self.frames = [sf.info(p).frames for p in self.paths]
        self.segment, self.length, self.seed = segment, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index))
        file = int(rng.integers(len(self.paths)))
        start = int(rng.integers(max(self.frames[file] - self.segment, 0) + 1))
        audio, _ = sf.read(self.paths[file], start=start, frames=self.segment, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if len(audio) < self.segment:
            audio = np.pad(audio, (0, self.segment - len(audio)))
        return torch.from_numpy(audio)[None]


def unit_si_snr(estimate: torch.Tensor, reference: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """SI-SNR (dB) of the two signals each scaled to unit RMS first: ``[..., T] x [..., T] -> [...]``.

    The same number as :func:`~vmas.codec.quality.si_snr` for any audible output, but without its
    loophole as a loss: with the plain formula, a decoder whose phase is still wrong (SI-SNR near
    -40 dB) gains up to 40 dB by shrinking its output until the ``eps`` terms dominate, and the
    training run collapses to silence (measured: seeds that never recover, onset F 0.02). Scaled
    to unit RMS, shrinking gains nothing; ``floor`` only guards an all-zero signal.
    """
    def unit(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        return x / x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(floor)
    return si_snr(unit(estimate), unit(reference))


@dataclass(frozen=True)
class LossWeights:
    l1: float = 0.1
    msspec: float = 2.0
    sisnr: float = 0.5
    commitment: float = 1.0


class CodecTraining(L.LightningModule):
    """The Lightning side of codec training; ``model`` is an audiocraft ``EncodecModel`` (trained in place).

    ``history`` keeps ``(step, losses)`` for every step, for the report and its training-curve plot.
    """

    def __init__(self, model: torch.nn.Module, weights: LossWeights = LossWeights(), lr: float = 2e-3,
                 total_steps: int | None = None):
        super().__init__()
        self.total_steps = total_steps
        from audiocraft.losses import MultiScaleMelSpectrogramLoss

        self.model, self.weights, self.lr = model, weights, lr
        with warnings.catch_warnings():  # audiocraft's recipe: 64 mels even at n_fft 64, some bands empty
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
            self.msspec = MultiScaleMelSpectrogramLoss(int(model.sample_rate), range_start=6, range_end=11,
                                                       n_mels=64, normalized=True)
        self.history: list[dict] = []

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x: [B, 1, T]`` -> the weighted total and each term (unweighted; ``sisnr`` in dB, higher is better)."""
        result = self.model(x)
        y = result.x
        terms = {"l1": torch.nn.functional.l1_loss(y, x), "msspec": self.msspec(y, x),
                 "sisnr": unit_si_snr(y, x).mean(), "commitment": result.penalty if result.penalty is not None
                 else torch.zeros((), device=x.device)}
        w = self.weights
        terms["loss"] = (w.l1 * terms["l1"] + w.msspec * terms["msspec"] - w.sisnr * terms["sisnr"]
                         + w.commitment * terms["commitment"])
        return terms

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch)
        logged = {f"codec/train_{k}": v.detach() for k, v in terms.items()}
        self.log_dict(logged, on_step=True, prog_bar=False, batch_size=batch.shape[0])
        self.history.append({"step": int(self.global_step), **{k: float(v.detach()) for k, v in terms.items()}})
        return terms["loss"]

    def configure_optimizers(self):
        # audiocraft's EnCodec recipe uses Adam with beta1 = 0.5; a cosine decay to 10 % over the run
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr, betas=(0.5, 0.9))
        if not self.total_steps:
            return optimizer
        decay = lambda step: 0.1 + 0.45 * (1 + math.cos(math.pi * min(step / self.total_steps, 1.0)))  # noqa: E731
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
