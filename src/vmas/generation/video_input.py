"""Reading a creator's video for generation: checks that say what is wrong, and the model's frames.

Any video FFmpeg reads works: landscape or portrait (centre square crop, as training clips are
made), any resolution (decord decodes straight to a small size, so an 8K frame is never held at
full size), variable frame rate (frames are picked by their timestamps, not by index / fps).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from vmas.data.tokens import normalize_frames
from vmas.errors import StageError
from vmas.media.mux import scan_video
from vmas.media.video import open_frames, square_crop_resize


class VideoInputError(StageError):
    """An input that cannot be given music (named file, and why)."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration_s: float
    fps: float  # average
    width: int
    height: int
    has_audio: bool
    variable_frame_rate: bool


def inspect_video(path: str | Path) -> VideoInfo:
    """Open ``path`` and describe its first video stream; :class:`VideoInputError` when unusable."""
    path = Path(path)
    if path.is_dir():
        raise VideoInputError(f"{path}: is a folder (give video files, or a folder to `vmas generate` itself)")
    if not path.is_file():
        raise VideoInputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoInputError(f"{path}: empty file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoInputError(f"{path}: not a readable media file ({exc})") from None
    with container:
        if not container.streams.video:
            raise VideoInputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = float(stream.average_rate or 0)
        guessed = float(stream.guessed_rate or 0)
        variable = bool(rate and guessed and abs(rate - guessed) > 0.01 * rate)
        width, height, has_audio = stream.codec_context.width, stream.codec_context.height, bool(container.streams.audio)
    if duration <= 0 or not (rate or guessed):
        # Ogg gives no average rate, animated PNG no duration: read them off the packets (no decoding)
        try:
            track = scan_video(path)
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoInputError(f"{path}: the video stream cannot be read ({exc})") from None
        duration = duration if duration > 0 else track.duration_s
        rate = rate or guessed or (track.packets / duration if duration > 0 else 0.0)
    info = VideoInfo(path, duration, rate or guessed, width, height, has_audio, variable)
    if info.duration_s <= 0 or info.fps <= 0:
        raise VideoInputError(f"{path}: zero duration (no decodable frames)")
    if min(info.width, info.height) <= 0:
        raise VideoInputError(f"{path}: the video stream has no frame size")
    return info


class ModelFrames:
    """The model's view of a video: ``frames(start_s)`` -> ``[3, F, S, S]`` normalised, at the model's fps.

    Frame ``j`` of a window is the source frame shown at ``start_s + j / fps`` (by timestamp);
    past the end the last frame repeats, as training clips do.
    """

    def __init__(self, info: VideoInfo, frames: int, fps: float, size: int):

        self.frames, self.fps, self.size = frames, fps, size
        scale = size / min(info.width, info.height)
        width, height = max(int(round(info.width * scale)), size), max(int(round(info.height * scale)), size)
        try:
            self.reader = open_frames(info.path, width, height)
        except ValueError as exc:
            raise VideoInputError(str(exc)) from None
        if len(self.reader) == 0:
            raise VideoInputError(f"{info.path}: no decodable frames")
        self.starts = self.reader.get_frame_timestamp(range(len(self.reader)))[:, 0]  # [N] seconds

    def window(self, start_s: float) -> torch.Tensor:

        times = start_s + np.arange(self.frames) / self.fps
        index = np.clip(np.searchsorted(self.starts, times + 1e-6, side="right") - 1, 0, len(self.starts) - 1)
        decoded = self.reader.get_batch(list(index)).asnumpy()  # [F, h, w, 3] uint8, short side ~ size
        return normalize_frames(np.stack([square_crop_resize(f, self.size) for f in decoded]))
