"""The training set: tokenized clips (codes, beat weights) with their training videos, for Lightning.

Two sources, picked by ``train.data``: ``files`` reads each clip's ``.npz`` and mp4 named by the
tokenize manifest (the small-data path: the manifest's paths are held in memory); ``shards`` streams
the ``shard`` stage's WebDataset shards from any fsspec URL, holding only their index. Both go
through the same order (:mod:`vmas.data.stream`: a function of ``(seed, position)``, so a resumed run
sees exactly the batches an uninterrupted one would), and clips are decoded (decord) in the
DataLoader's worker processes.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vmas.config import Config
from vmas.data.split import split_by_video
from vmas.data.stream import slot_stream, unit_pass, worker_share
from vmas.layout import manifest_dir, shard_url
from vmas.manifest import Manifest

# Hiera / ImageNet normalisation
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
log = logging.getLogger(__name__)
# Lightning warns that an IterableDataset's __len__ may be off with several workers; TrainStream's is
# exact (each worker gives its share of the batches, see vmas.data.stream.worker_share).
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined", category=UserWarning)
INDEX_COLUMNS = ["id", "video_id", "tokens_path", "video_path", "error"]


def read_index(manifest_root: str | Path) -> list[dict]:
    """The usable rows of a tokenize manifest (paths only), sorted by id."""
    manifest = Manifest(manifest_root)
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest_root}: no tokenize manifest; run `vmas tokenize` (or `vmas curate`) first")
    rows = [{k: r[k] for k in INDEX_COLUMNS[:-1]} for r in manifest.iter_rows(INDEX_COLUMNS) if r["error"] is None]
    if not rows:
        raise ValueError(f"{manifest_root}: the tokenize manifest has no usable clip")
    return sorted(rows, key=lambda r: r["id"])


def load_frames(path, frames: int, size: int) -> torch.Tensor:
    """A training video (a path, or a file object of its bytes) -> ``[3, frames, size, size]`` float,
    normalised; short videos repeat their last frame."""
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    path = getattr(path, "name", path)  # for the messages below
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


class FileClips:
    """Per-clip files as units of one clip each: the tokenize manifest's rows (paths), sorted by id."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.counts = np.ones(len(rows), dtype=np.int64)

    def name(self, unit: int) -> str:
        return self.rows[unit]["tokens_path"]

    def read(self, unit: int) -> list[dict]:
        return [self.rows[unit]]  # read (and decoded) only if the clip is emitted


class ShardClips:
    """Shards as units, from their index (:func:`vmas.data.shards.read_shard_index`), ordered by first clip."""

    def __init__(self, entries: list):
        self.entries = entries
        self.counts = np.array([e.clips for e in entries], dtype=np.int64)

    def name(self, unit: int) -> str:
        return self.entries[unit].url

    def read(self, unit: int):
        from vmas.data.shards import iter_shard

        entry = self.entries[unit]
        return iter_shard(entry.url, entry.clips)


def decode_clip(clip: dict, frames: int, size: int) -> dict:
    """A clip as the model takes it: ``{"codes": [K, T] int64, "beat_weights": [T] float, "frames":
    [3, F, S, S] float, "id": str}``, from a manifest row (files) or a shard sample (bytes)."""
    if "tokens_path" in clip:
        with np.load(clip["tokens_path"]) as npz:
            codes, weights = npz["codes"], npz["beat_weights"]
        clip_id, video = clip["id"], clip["video_path"]
    else:
        import io
        import json

        from vmas.data.shards import decode_arrays

        codes, weights = decode_arrays(clip)
        clip_id = json.loads(clip["json"])["id"]
        video = io.BytesIO(clip["mp4"])
        video.name = f"{clip.get('__url__', 'shard')}:{clip['__key__']}.mp4"  # for error messages
    return {"codes": torch.from_numpy(codes.astype(np.int64)), "beat_weights": torch.from_numpy(
        weights.astype(np.float32)), "frames": load_frames(video, frames, size), "id": clip_id}


class CorruptPolicy:
    """What a stream does with a unit that cannot be read: ``fail`` (re-raise, naming it) or ``skip``
    (log it, count it in this worker, go on)."""

    def __init__(self, source, policy: str):
        self.source, self.policy, self.skipped = source, policy, 0

    def __call__(self, unit: int, exc: Exception) -> None:
        if self.policy != "skip":
            raise exc
        self.skipped += 1
        log.warning("skipping %s (train.corrupt_shards=skip; %d skipped by this reader): %s",
                    self.source.name(unit), self.skipped, exc)


class TrainStream(IterableDataset):
    """The training clips of one rank, decoded in the DataLoader's workers, in the order of
    :mod:`vmas.data.stream`: exactly ``batches x batch_size`` of them, resuming after ``done_batches``."""

    def __init__(self, source, frames: int, size: int, batch_size: int, batches: int, done_batches: int = 0,
                 seed: int = 0, buffer: int = 256, rank: int = 0, world: int = 1, corrupt: str = "fail"):
        self.source, self.frames, self.size, self.batch_size = source, frames, size, batch_size
        self.batches, self.done, self.seed, self.buffer = batches, done_batches, seed, buffer
        self.rank, self.world, self.corrupt = rank, world, corrupt

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role, before, mine = worker_share(self.batches, self.done, worker, workers)
        stream = slot_stream(self.source.counts, self.source.read, self.seed, self.rank * workers + role,
                             self.world * workers, self.buffer, before * self.batch_size,
                             CorruptPolicy(self.source, self.corrupt))
        for clip in islice(stream, mine * self.batch_size):
            yield decode_clip(clip, self.frames, self.size)


class ValidationPass(IterableDataset):
    """Every held-out clip once, in stored order, shared by the DataLoader's workers."""

    def __init__(self, source, frames: int, size: int, corrupt: str = "fail"):
        self.source, self.frames, self.size, self.corrupt = source, frames, size, corrupt

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        policy = CorruptPolicy(self.source, self.corrupt)

        def read(unit: int):
            try:
                yield from self.source.read(unit)
            except Exception as exc:  # noqa: BLE001 - the policy decides
                policy(unit, exc)

        for clip in unit_pass(self.source.counts, read, worker, workers):
            yield decode_clip(clip, self.frames, self.size)


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
    data: str = "files"  # or "shards"
    shards: str | None = None  # the shards' root URL (data: shards)
    shuffle_buffer: int = 256
    corrupt_shards: str = "fail"

    @classmethod
    def from_config(cls, cfg: Config, max_steps: int) -> "DataSettings":
        t = cfg.train
        return cls(manifest_dir(cfg, "tokenize"), cfg.video.frames, cfg.video.size, t.batch_size, max_steps,
                   t.accumulate_grad_batches, t.val_share, t.num_workers, t.seed, t.split_seed, t.data,
                   t.shards or shard_url(cfg), t.shuffle_buffer, t.corrupt_shards)


def training_sources(settings: DataSettings) -> tuple:
    """``(train, validation or None)`` units: the shard index's two splits, or the tokenize manifest's
    rows split by video."""
    if settings.data == "shards":
        from vmas.data.shards import read_shard_index

        entries = read_shard_index(settings.shards)
        train = [e for e in entries if e.split == "train"]
        val = [e for e in entries if e.split == "val"]
        if not train:
            raise ValueError(f"{settings.shards}: the shard index lists no train shard")
        return ShardClips(train), ShardClips(val) if val else None
    rows = read_index(settings.manifest)
    if settings.val_share > 0 and len({r["video_id"] for r in rows}) >= 2:
        train, val = split_by_video(rows, settings.val_share, settings.split_seed)
        return FileClips(train), FileClips(val)
    return FileClips(rows), None


class TokenDataModule(L.LightningDataModule):
    """Train/validation clips (split by source video) from per-clip files or shards. The train loader
    is position-indexed for exact resume and split over ranks and workers by :class:`TrainStream`
    itself (so Lightning must not add a distributed sampler)."""

    def __init__(self, settings: DataSettings):
        super().__init__()
        self.settings = settings
        self.train_source = self.val_source = None

    @property
    def train_clips(self) -> int:
        return int(self.train_source.counts.sum()) if self.train_source is not None else 0

    @property
    def val_clips(self) -> int:
        return int(self.val_source.counts.sum()) if self.val_source is not None else 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_source is None:
            self.train_source, self.val_source = training_sources(self.settings)

    def _loader(self, dataset, batch_size: int) -> DataLoader:
        s = self.settings
        return DataLoader(dataset, batch_size=batch_size, num_workers=s.num_workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available(), drop_last=False)

    def train_dataloader(self) -> DataLoader:
        s = self.settings
        trainer = self.trainer
        step = int(trainer.global_step) if trainer is not None else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        stream = TrainStream(self.train_source, s.frames, s.size, s.batch_size,
                             max(s.max_steps - step, 0) * s.accumulate, step * s.accumulate, s.seed,
                             s.shuffle_buffer, rank, world, s.corrupt_shards)
        return self._loader(stream, s.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_source is None:
            return []
        s = self.settings
        return self._loader(ValidationPass(self.val_source, s.frames, s.size, s.corrupt_shards), s.batch_size)


def usable_clips(cfg: Config) -> list[dict]:
    """``{"id", "key", "codec_sha256"}`` of every usable clip in the tokenize manifest, by id: what a
    model trains on (one pass over the manifest)."""
    rows = Manifest(manifest_dir(cfg, "tokenize")).iter_rows(["id", "key", "codec_sha256", "error"])
    return sorted(({k: r[k] for k in ("id", "key", "codec_sha256")} for r in rows if r["error"] is None),
                  key=lambda r: r["id"])
