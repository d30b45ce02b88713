"""Splits that never put clips of one source video on both sides."""

from __future__ import annotations

import hashlib
import math


def split_by_video(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(kept, held-out) rows; whole ``video_id`` groups are held out (at least one, never all).

    The held-out videos are the first ``ceil(share x videos)`` in an order hashed from
    ``(seed, video_id)``: stable when videos are added, and the same on every machine.
    """
    videos = sorted({r["video_id"] for r in rows}, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    if len(videos) < 2:
        raise ValueError(f"{len(videos)} source video(s): holding one out needs at least 2")
    held = set(videos[: min(max(1, math.ceil(share * len(videos))), len(videos) - 1)])
    return [r for r in rows if r["video_id"] not in held], [r for r in rows if r["video_id"] in held]
