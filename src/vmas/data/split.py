"""Splits that never put clips of one source video on both sides.

The held-out videos are the first ``ceil(share x videos)`` in an order hashed from
``(seed, video_id)``: the same on every machine, and mostly stable when videos are added. The rule
needs only one 8-byte hash per video (:class:`HeldOut`), so the ``shard`` stage can split millions of
clips while streaming their manifest, and ``train`` (per-clip files), ``train_codec`` and ``evaluate``
hold out exactly the same videos.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable

import numpy as np


def video_rank(video_id: str, seed: int) -> int:
    """Where a video falls in the hashed order: the first 64 bits of ``sha256(f"{seed}:{video_id}")``."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{video_id}".encode()).digest()[:8], "big")


class HeldOut:
    """Which videos are held out: those whose :func:`video_rank` is at most a threshold.

    Built from a stream of video ids (repeats allowed) in memory of 8 bytes per distinct video.
    """

    def __init__(self, seed: int, threshold: int, videos: int, held: int):
        self.seed, self.threshold, self.videos, self.held = seed, threshold, videos, held

    @classmethod
    def from_videos(cls, video_ids: Iterable[str], share: float, seed: int, chunk: int = 100_000) -> "HeldOut":
        """At least one video held out and never all; ``ValueError`` for fewer than two videos."""
        parts, pending = [], []
        for video in video_ids:
            pending.append(video_rank(video, seed))
            if len(pending) >= chunk:
                parts.append(np.unique(np.asarray(pending, dtype=np.uint64)))
                pending = []
        parts.append(np.asarray(pending, dtype=np.uint64))
        ranks = np.unique(np.concatenate(parts))
        if len(ranks) < 2:
            raise ValueError(f"{len(ranks)} source video(s): holding one out needs at least 2")
        held = min(max(1, math.ceil(share * len(ranks))), len(ranks) - 1)
        return cls(seed, int(ranks[held - 1]), len(ranks), held)

    def __contains__(self, video_id: str) -> bool:
        return video_rank(video_id, self.seed) <= self.threshold


def split_by_video(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(kept, held-out) rows; whole ``video_id`` groups are held out (at least one, never all)."""
    out = HeldOut.from_videos((r["video_id"] for r in rows), share, seed)
    return [r for r in rows if r["video_id"] not in out], [r for r in rows if r["video_id"] in out]
