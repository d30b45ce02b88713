"""Putting music into a video: the original video stream copied packet for packet, a new AAC track.

The picture is never re-encoded (no quality loss, no time spent). The original sound can be
dropped, kept (mixed with the music at full level) or ducked (mixed ``duck_db`` below the music).
The file appears at its path only once complete.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from vmas.io import atomic_path
from vmas.media.audio import read_audio

OriginalAudio = Literal["drop", "keep", "duck"]
AAC_FRAME = 1024


def mix_original(music: np.ndarray, original: np.ndarray | None, mode: OriginalAudio, duck_db: float) -> np.ndarray:
    """``music [C, n]`` with the original ``[C', n']`` (any channel count, trimmed or padded to n) per ``mode``."""
    if mode == "drop" or original is None or original.size == 0:
        return music
    channels = max(music.shape[0], original.shape[0])
    music = np.broadcast_to(music, (channels, music.shape[1])) if music.shape[0] < channels else music
    original = np.broadcast_to(original.mean(0, keepdims=True), (channels, original.shape[1])) \
        if original.shape[0] < channels else original
    n = music.shape[1]
    original = np.pad(original[:, :n], ((0, 0), (0, max(0, n - original.shape[1]))))
    gain = 1.0 if mode == "keep" else 10 ** (duck_db / 20)
    mixed = music + gain * original
    peak = float(np.abs(mixed).max()) if mixed.size else 0.0
    return mixed / peak * 0.98 if peak > 0.98 else mixed  # no clipping from the sum


def mux_music(video_path: str | Path, music: np.ndarray, sample_rate: int, out_path: str | Path,
              original: OriginalAudio = "drop", duck_db: float = -12.0) -> Path:
    """Write ``out_path``: ``video_path``'s video stream copied, plus ``music [n]`` or ``[C, n]`` as AAC.

    The music should already be as long as the video; it starts at the video's first frame.
    """
    music = np.atleast_2d(np.asarray(music, np.float32))
    if original != "drop":
        with av.open(str(video_path)) as probe:
            has_audio = bool(probe.streams.audio)
        if has_audio:
            music = mix_original(music, read_audio(video_path, sample_rate=sample_rate, mono=False)[0], original, duck_db)
    music = np.ascontiguousarray(np.clip(music, -1.0, 1.0), dtype=np.float32)
    layout = {1: "mono", 2: "stereo"}.get(music.shape[0])
    if layout is None:
        music, layout = np.ascontiguousarray(music[:2]), "stereo"
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, av.open(str(video_path)) as source:
        video_in = source.streams.video[0]
        with av.open(str(tmp), "w", format=_format(out_path)) as target:
            video_out = target.add_stream_from_template(video_in)
            video_out.metadata.update(video_in.metadata)
            audio_out = target.add_stream("aac", rate=sample_rate, layout=layout)
            audio_out.time_base = Fraction(1, sample_rate)
            start = float(video_in.start_time * video_in.time_base) if video_in.start_time is not None else 0.0
            frames = _audio_frames(music, sample_rate, layout, offset=int(round(start * sample_rate)))
            pending = next(frames, None)
            for packet in source.demux(video_in):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                at = float(packet.dts * packet.time_base)
                while pending is not None and pending.pts / sample_rate <= at:  # keep the streams interleaved
                    target.mux(audio_out.encode(pending))
                    pending = next(frames, None)
                packet.stream = video_out
                target.mux(packet)
            while pending is not None:
                target.mux(audio_out.encode(pending))
                pending = next(frames, None)
            target.mux(audio_out.encode(None))
    return out_path


def _format(path: Path) -> str:
    return {".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower(), "mp4")


def _audio_frames(audio: np.ndarray, sample_rate: int, layout: str, offset: int):
    for i in range(0, audio.shape[1], AAC_FRAME):
        chunk = audio[:, i : i + AAC_FRAME]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, offset + i
        yield frame
