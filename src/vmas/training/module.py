"""The Lightning side of VMAs training; the network (:class:`vmas.models.VMAs`) is injected.

Loss = beat-weighted token cross-entropy + ``contrastive_weight`` x symmetric InfoNCE between
pooled music features (predicted distributions x codec codebooks, from a second decoder pass with
the video nulled: see :meth:`vmas.models.VMAs.music_embedding`) and pooled video features.
``beat_weighting=False`` and ``contrastive_weight=0`` are the paper's two ablations.
Randomness inside a step (which samples drop their video for classifier-free guidance) is
seeded by ``(seed, global step)``, so a resumed run takes exactly the steps an uninterrupted one
would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch

from vmas.models.vmas import VMAs
from vmas.modules.losses import beat_weighted_cross_entropy, contrastive_loss


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 1000
    min_lr_ratio: float = 0.1


@dataclass(frozen=True)
class LossSettings:
    beat_weighting: bool = True
    contrastive_weight: float = 0.1
    temperature: float = 0.07


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup`` steps, then cosine down to ``floor``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class VMAsTraining(L.LightningModule):
    def __init__(self, model: VMAs, losses: LossSettings = LossSettings(), optim: OptimSettings = OptimSettings(),
                 seed: int = 0):
        super().__init__()
        self.model, self.loss_settings, self.optim, self.seed = model, losses, optim, seed

    def losses(self, batch: dict, keep: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``batch``: codes ``[B, K, T]``, beat_weights ``[B, T]``, frames ``[B, 3, F, S, S]``."""
        s = self.loss_settings
        out = self.model(batch["codes"], batch["frames"], keep=keep)
        weights = batch["beat_weights"] if s.beat_weighting else None
        terms = {"ce": beat_weighted_cross_entropy(out.logits, batch["codes"], out.mask, weights)}
        terms["ce_plain"] = beat_weighted_cross_entropy(out.logits.detach(), batch["codes"], out.mask, None)
        if s.contrastive_weight > 0 and batch["codes"].shape[0] > 1:
            # the music side is the video-blind embedding evaluation's retrieval uses, for every sample
            music, video = self.model.embeddings(batch["codes"], out.video)
            terms["contrastive"] = contrastive_loss(music, video, s.temperature)
        else:
            terms["contrastive"] = torch.zeros((), device=out.logits.device)
        terms["loss"] = terms["ce"] + s.contrastive_weight * terms["contrastive"]
        return terms

    def _step_seed(self, batch_idx: int) -> int:
        """A seed for this micro-batch: (seed, optimizer step, position within the accumulation)."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return (self.seed * 1_000_003 + int(self.global_step)) * 64 + batch_idx % accumulate

    def _cfg_keep(self, batch_size: int, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self._step_seed(batch_idx))
        keep = torch.rand(batch_size, generator=generator) >= self.model.cfg_dropout
        return keep.to(self.device)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # All randomness of a step (dropout, CFG) is a function of (seed, step): resuming is exact.
        torch.manual_seed(self._step_seed(batch_idx))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.losses(batch, self._cfg_keep(batch["codes"].shape[0], batch_idx))
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, prog_bar=False,
                      batch_size=batch["codes"].shape[0], sync_dist=False)
        self.log("train/tokens", float(batch["codes"].numel()), on_step=True, reduce_fx="sum",
                 batch_size=batch["codes"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        keep = torch.ones(batch["codes"].shape[0], dtype=torch.bool, device=self.device)
        terms = self.losses(batch, keep)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_epoch=True, batch_size=batch["codes"].shape[0],
                      sync_dist=True)

    def configure_optimizers(self):
        o = self.optim
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "pos_embed" in name or name.startswith("music_decoder.emb") else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=(0.9, 0.95))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, o.warmup_steps, o.max_steps, o.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
