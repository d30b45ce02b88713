"""Video files: writing H.264 + AAC mp4 with PyAV, decoding to a size with decord, and frame crops."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import cv2
import numpy as np

from vmas.io import atomic_path

AAC_FRAME = 1024
X264_OPTIONS = {"threads": "1", "x264-params": "bframes=0"}  # deterministic output: see write_mp4


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
) -> None:
    """Encode RGB ``frames`` (each ``[H, W, 3]`` uint8, even sides) and optional ``audio``
    (``[channels, n]`` float) to an mp4 at ``fps`` (may be fractional, e.g. 9.6).

    Video is H.264 (yuv420p, BT.601 limited range) on one thread and without B-frames, and the
    colour conversion is done here in numpy rather than by swscale: with B-frames about one encode
    in fifteen of the same frames came out different (0 in 160 without), and swscale's output
    differed by one level between processes. So the same input gives the same bytes. Audio is AAC. Packets are interleaved by
    time. The file appears at ``path`` only once complete.
    """
    rate = Fraction(fps).limit_denominator(1001)
    if audio is not None:
        audio = np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32)
        layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            vstream = None
            astream = None
            if audio is not None:
                astream = out.add_stream("aac", rate=sample_rate, layout=layout)
                astream.bit_rate = 128_000
            sent = 0
            for index, rgb in enumerate(frames):
                if vstream is None:
                    vstream = out.add_stream("libx264", rate=rate, options=X264_OPTIONS | {"crf": str(crf), "preset": preset})
                    vstream.height, vstream.width = rgb.shape[:2]
                    vstream.pix_fmt = "yuv420p"
                    vstream.time_base = 1 / rate
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
                frame.pts = index
                out.mux(vstream.encode(frame))
                if astream is not None:
                    until = min(int((index + 1) * sample_rate / rate), audio.shape[1])
                    while sent + AAC_FRAME <= until:
                        out.mux(astream.encode(_audio_frame(audio[:, sent : sent + AAC_FRAME], sample_rate, layout, sent)))
                        sent += AAC_FRAME
            if vstream is None:
                raise ValueError(f"{path}: no frames to write")
            if astream is not None:
                while sent < audio.shape[1]:
                    chunk = audio[:, sent : sent + AAC_FRAME]
                    out.mux(astream.encode(_audio_frame(chunk, sample_rate, layout, sent)))
                    sent += chunk.shape[1]
                out.mux(astream.encode(None))
            out.mux(vstream.encode(None))


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[H * 3 / 2, W]`` uint8 planar I420 (BT.601, limited range)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = rgb.shape[:2]

    def subsample(c: np.ndarray) -> np.ndarray:  # 2x2 mean: [H, W] -> [H/2 * W/2]
        return c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)).ravel()

    planes = np.concatenate([y.ravel(), subsample(u), subsample(v)])
    return np.clip(np.round(planes), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def _audio_frame(chunk: np.ndarray, sample_rate: int, layout: str, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate)
    return frame


def open_scaled(path: str | Path, width: int, height: int, num_threads: int = 1):
    """A ``decord.VideoReader`` that decodes straight to about ``width x height`` (frames ``[h, w, 3]``).

    decord fails on some exact output sizes (a 96 x 64 video asked for 48 x 32 or 72 x 48 gives
    "DECORDArrayCopyFromTo: the size must exactly match"), so the first frame is decoded as a probe
    and, on that error, the width is nudged by 2 px at a time (callers crop and resize to their own
    size afterwards, so a frame 2 px wider changes nothing they keep).
    """
    import decord

    last: Exception | None = None
    for extra in (0, 2, 4, 6):
        reader = decord.VideoReader(str(path), width=width + extra, height=height, num_threads=num_threads)
        try:
            if len(reader):
                reader.get_batch([0])
            reader.seek(0)
            return reader
        except decord.DECORDError as exc:
            last = exc
    raise ValueError(f"{path}: cannot decode at {width}x{height} ({last})")


class DecodedFrames:
    """The part of ``decord.VideoReader`` that frame pickers use, over PyAV, for containers decord
    cannot open (Ogg, animated PNG): every frame decoded once at ``width x height`` and kept
    (``[N, height, width, 3]`` uint8), so it is for short inputs; ``max_bytes`` bounds it."""

    def __init__(self, path: str | Path, width: int, height: int, max_bytes: int = 2 << 30):
        import av

        frames, starts = [], []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if (len(frames) + 1) * width * height * 3 > max_bytes:
                    raise ValueError(f"{path}: too long to decode into memory at {width}x{height} "
                                     f"(over {max_bytes >> 20} MB); convert it to mp4 first")
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                starts.append(float(frame.time) if frame.time is not None else len(starts) / float(
                    stream.guessed_rate or 25))
        order = np.argsort(starts, kind="stable")
        self.frames = np.stack([frames[i] for i in order]) if frames else np.zeros((0, height, width, 3), np.uint8)
        self.starts = np.asarray(starts, dtype=np.float64)[order]

    def __len__(self) -> int:
        return len(self.frames)

    def get_frame_timestamp(self, indices) -> np.ndarray:
        """``[len(indices), 2]``: each frame's start and (the next frame's start as) end, in seconds."""
        idx = np.asarray(list(indices), dtype=np.int64)
        ends = np.append(self.starts[1:], self.starts[-1] if len(self.starts) else 0.0)
        return np.stack([self.starts[idx], ends[idx]], axis=1)

    def get_batch(self, indices) -> "DecodedFrames._Batch":
        return self._Batch(self.frames[np.asarray(list(indices), dtype=np.int64)])

    class _Batch:
        def __init__(self, array: np.ndarray):
            self.array = array

        def asnumpy(self) -> np.ndarray:
            return self.array


def open_frames(path: str | Path, width: int, height: int):
    """:func:`open_scaled` (decord), or for a container decord cannot open (Ogg, animated PNG)
    :class:`DecodedFrames` (PyAV): either way ``len``, ``get_frame_timestamp`` and ``get_batch``."""
    try:
        return open_scaled(path, width, height)
    except Exception as first:  # noqa: BLE001 - decord raises its own DECORDError
        try:
            return DecodedFrames(path, width, height)
        except (av.error.FFmpegError, ValueError) as second:
            raise ValueError(f"{path}: cannot decode the video (decord: {first}; PyAV: {second})") from None


def frame_rate(reader) -> float:
    """Frames per second of a reader from :func:`open_frames`, from its frames' timestamps."""
    if hasattr(reader, "get_avg_fps"):
        return float(reader.get_avg_fps())
    starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    return (len(starts) - 1) / float(starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] else 25.0


def square_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of ``[H, W, 3]`` then resize to ``[size, size, 3]``."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top : top + side, left : left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def export_span(source_path: str, start_s: float, end_s: float, path: str | Path) -> Path:
    """``[start_s, end_s)`` of a video as a silent mp4 at the source's frame rate (for listening tests)."""
    import decord

    reader = decord.VideoReader(source_path, num_threads=1)
    fps = float(reader.get_avg_fps())
    first, last = int(round(start_s * fps)), min(int(round(end_s * fps)), len(reader))
    frames = reader.get_batch(list(range(first, last))).asnumpy()
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    write_mp4(path, frames[:, :h, :w], fps)
    return Path(path)
