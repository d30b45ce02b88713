"""The training set: tokenized clips (codes, beat weights) with their training videos, for Lightning.

Each item reads one clip's ``.npz`` and decodes its training video with decord, in the DataLoader's
worker processes; only the index (paths) is held in memory. Batches come in an order fixed by
``(seed, step)``, and a resumed run starts exactly at the step it stopped at (see :class:`StepSampler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vmas.config import Config
from vmas.data.split import split_by_video
from vmas.layout import manifest_dir
from vmas.manifest import Manifest

# Hiera / ImageNet normalisation
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INDEX_COLUMNS = ["id", "video_id", "tokens_path", "video_path", "error"]


def read_index(manifest_root: str | Path) -> list[dict]:
    """The usable rows of a tokenize manifest (paths only), sorted by id."""
    manifest = Manifest(manifest_root)
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest_root}: no tokenize manifest; run `vmas tokenize` (or `vmas curate`) first")
    rows = [r for r in manifest.iter_rows(INDEX_COLUMNS) if r["error"] is None]
    if not rows:
        raise ValueError(f"{manifest_root}: the tokenize manifest has no usable clip")
    return sorted(rows, key=lambda r: r["id"])


def load_frames(path: str, frames: int, size: int) -> torch.Tensor:
    """A training video -> ``[3, frames, size, size]`` float, normalised; short videos repeat their last frame."""
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    n = len(reader)
    if n == 0:
        raise ValueError(f"{path}: no frames")
    idx = [min(i, n - 1) for i in range(frames)]
    video = reader.get_batch(idx).asnumpy()  # [F, H, W, 3] uint8
    if video.shape[1:3] != (size, size):
        raise ValueError(f"{path}: frames are {video.shape[2]}x{video.shape[1]}, the model takes {size}x{size} "
                         "(re-run `vmas clip` with this video.size)")
    return normalize_frames(video)


def normalize_frames(video: np.ndarray) -> torch.Tensor:
    """``[F, S, S, 3]`` uint8 RGB -> ``[3, F, S, S]`` float, ImageNet-normalised (what the video encoder takes)."""
    x = (video.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x).permute(3, 0, 1, 2).contiguous()


class TokenClips(Dataset):
    """Item ``i``: ``{"codes": [K, T] int64, "beat_weights": [T] float, "frames": [3, F, S, S] float}``."""

    def __init__(self, rows: list[dict], frames: int, size: int):
        self.rows, self.frames, self.size = rows, frames, size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        with np.load(row["tokens_path"]) as npz:
            codes = torch.from_numpy(npz["codes"].astype(np.int64))
            weights = torch.from_numpy(npz["beat_weights"].astype(np.float32))
        return {"codes": codes, "beat_weights": weights, "frames": load_frames(row["video_path"], self.frames, self.size),
                "index": index}


class StepSampler(Sampler[int]):
    """This rank's indices for optimizer steps ``start_step ..``; epoch ``e`` is a permutation seeded by ``(seed, e)``.

    The global stream is ``j -> perm(seed, j // n)[j % n]``; step ``s`` takes the ``world x
    samples_per_step`` stream items from ``j = s x world x samples_per_step``, and rank ``r`` the
    ``r``-th run of ``samples_per_step`` of them. A run resumed at step ``s`` with the same number of
    ranks sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, n: int, samples_per_step: int, total_steps: int, start_step: int = 0, seed: int = 0,
                 rank: int = 0, world: int = 1):
        self.n, self.per_step, self.total, self.start, self.seed = n, samples_per_step, total_steps, start_step, seed
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(self.total - self.start, 0) * self.per_step

    def __iter__(self) -> Iterator[int]:
        cache: dict[int, np.ndarray] = {}
        for step in range(self.start, self.total):
            first = (step * self.world + self.rank) * self.per_step
            for j in range(first, first + self.per_step):
                epoch = j // self.n
                if epoch not in cache:
                    cache = {epoch: np.random.default_rng((self.seed, epoch)).permutation(self.n)}
                yield int(cache[epoch][j % self.n])


@dataclass
class DataSettings:
    manifest: Path
    frames: int
    size: int
    batch_size: int
    max_steps: int
    accumulate: int = 1
    val_share: float = 0.1
    num_workers: int = 2
    seed: int = 0  # batch order
    split_seed: int = 0  # which videos are held out


class TokenDataModule(L.LightningDataModule):
    """Train/validation split by source video; the train loader is step-indexed for exact resume and
    sharded over ranks by :class:`StepSampler` itself (so Lightning must not add a distributed sampler)."""

    def __init__(self, settings: DataSettings):
        super().__init__()
        self.settings = settings
        self.train_rows: list[dict] = []
        self.val_rows: list[dict] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows:
            return
        rows = read_index(self.settings.manifest)
        if self.settings.val_share > 0 and len({r["video_id"] for r in rows}) >= 2:
            self.train_rows, self.val_rows = split_by_video(rows, self.settings.val_share, self.settings.split_seed)
        else:
            self.train_rows, self.val_rows = rows, []

    def _loader(self, dataset: Dataset, sampler: Sampler | None, batch_size: int) -> DataLoader:
        s = self.settings
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=s.num_workers,
                          persistent_workers=False, pin_memory=torch.cuda.is_available(), drop_last=False)

    def train_dataloader(self) -> DataLoader:
        s = self.settings
        trainer = self.trainer
        start = int(trainer.global_step) if trainer is not None else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        per_step = s.batch_size * s.accumulate
        sampler = StepSampler(len(self.train_rows), per_step, s.max_steps, start, s.seed, rank, world)
        return self._loader(TokenClips(self.train_rows, s.frames, s.size), sampler, s.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_rows:
            return []
        return self._loader(TokenClips(self.val_rows, self.settings.frames, self.settings.size), None,
                            self.settings.batch_size)


def usable_clips(cfg: Config) -> list[dict]:
    """``{"id", "key", "codec_sha256"}`` of every usable clip in the tokenize manifest, by id: what a
    model trains on (one pass over the manifest)."""
    rows = Manifest(manifest_dir(cfg, "tokenize")).iter_rows(["id", "key", "codec_sha256", "error"])
    return sorted(({k: r[k] for k in ("id", "key", "codec_sha256")} for r in rows if r["error"] is None),
                  key=lambda r: r["id"])
