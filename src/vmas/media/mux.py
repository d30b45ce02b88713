"""Putting music into a video: the original video stream copied packet for packet, a new music track.

The picture is copied, never re-encoded when a container can hold it (no quality loss, no time
spent): into an mp4 when it can, else Matroska (which takes most codecs), WebM or Ogg (Theora,
VP8), or a QuickTime file (QuickTime-only codecs such as ``qtrle``). The output's suffix follows
the container used, and :class:`MuxResult` says which. Only when no container takes the codec is
the picture re-encoded as H.264, with a logged warning and ``MuxResult.reencoded`` set.

Every packet that carries data is written, including those the demuxer gives without a decoding
timestamp (Matroska stores none, so HEVC/H.264 with B-frames come out with ``dts=None``, the first
key frame among them); only the demuxer's empty flush packets are left out. Missing decoding
timestamps are rebuilt from the presentation timestamps.

Before the file appears at its path it is read again and checked: the same number of video packets
(frames, for a re-encode) and the same video duration as the input, else :class:`MuxVerificationError`.
The music track is AAC, or Opus where the container (WebM, Ogg) takes no AAC. The original sound
can be dropped, kept (mixed with the music at full level) or ducked (mixed ``duck_db`` below).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import av
import numpy as np

from vmas.io import atomic_path
from vmas.media.audio import MUSIC_AAC_BIT_RATE, read_audio

log = logging.getLogger(__name__)

OriginalAudio = Literal["drop", "keep", "duck"]
AAC_FRAME = 1024
CONTAINERS = {"mp4": ".mp4", "matroska": ".mkv", "webm": ".webm", "ogg": ".ogv", "mov": ".mov"}  # tried in this order
_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".ogv": "ogg",
              ".ogg": "ogg"}
_OGG_VIDEO = {"theora", "vp8", "dirac"}  # FFmpeg's Ogg muxer takes these only (it cannot be asked)
_MUSIC_CODECS = {"webm": ("libopus", "libvorbis"), "ogg": ("libopus", "libvorbis")}  # others: AAC
_REENCODERS = ("libx264", "h264", "mpeg4")  # the first one this FFmpeg has is used
_REENCODE_OPTIONS = {"libx264": {"crf": "18", "preset": "medium"}, "h264": {"crf": "18"}, "mpeg4": {"qscale": "3"}}


class MuxError(RuntimeError):
    """No output could be made: every way tried is named in the message."""


class MuxVerificationError(MuxError):
    """The written file, read again, does not hold the input's video: it is never left at its path."""


@dataclass(frozen=True)
class VideoTrack:
    """A file's first video stream as its demuxer gives it (no decoding): the data packets in
    decoding order, with their timestamps in ``time_base`` units and a digest of their bytes."""

    codec: str
    time_base: Fraction
    pts: tuple[int | None, ...]
    dts: tuple[int | None, ...]
    durations: tuple[int, ...]
    digest: str  # blake2b over every packet's bytes, in order

    @property
    def packets(self) -> int:
        return len(self.pts)

    @property
    def duration_s(self) -> float:
        """From the first frame shown to the end of the last: the span of the presentation
        timestamps plus the last frame's duration (the typical frame step where none is stored)."""
        stamps = [(t, d) for t, d in zip(self.pts, self.durations) if t is not None] or \
                 [(t, d) for t, d in zip(self.dts, self.durations) if t is not None]
        if not stamps:
            return float(sum(self.durations) * self.time_base)
        starts = sorted(t for t, _ in stamps)
        steps = np.diff(starts)
        step = int(np.median(steps[steps > 0])) if (steps > 0).any() else 0
        end = max(t + (d if d > 0 else step) for t, d in stamps)
        return float((end - starts[0]) * self.time_base)


@dataclass(frozen=True)
class MuxResult:
    """What :func:`mux_music` wrote: the final ``path`` (its suffix follows ``container``), the
    video codec in it, whether the picture had to be re-encoded, and what the check read back."""

    path: Path
    container: str  # FFmpeg's format name: mp4, matroska, webm, ogg or mov
    video_codec: str
    reencoded: bool
    packets: int  # video packets in the output (frames, for a re-encode)
    duration_s: float  # the output's video duration, read back
    source_duration_s: float
    bit_exact: bool  # the copied packets have the input's bytes in the input's order
    refused: tuple[str, ...] = ()  # "container: why" for each container that did not take the stream


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
              original: OriginalAudio = "drop", duck_db: float = -12.0) -> MuxResult:
    """Write ``video_path``'s video stream plus ``music [n]`` or ``[C, n]`` (at ``sample_rate``)
    near ``out_path`` and return where and how (:class:`MuxResult`).

    ``out_path``'s suffix picks the container tried first (mp4 for an unknown one); the others of
    :data:`CONTAINERS` follow, and the file is written with the suffix of the one that takes the
    stream (``clip.mp4`` may become ``clip.mkv``). The music should already be as long as the
    video; it starts at the video's first frame. Raises :class:`MuxError` naming the input, its
    codec and every container tried when nothing could be written, :class:`MuxVerificationError`
    when the written file does not hold the input's video.
    """
    video_path, out_path = Path(video_path), Path(out_path)
    music = _prepare_music(video_path, music, sample_rate, original, duck_db)
    with av.open(str(video_path)) as probe:
        if not probe.streams.video:
            raise MuxError(f"{video_path}: has no video stream to put the music into")
        stream = probe.streams.video[0]
        described = f"{_codec_name(stream)} {stream.codec_context.width}x{stream.codec_context.height}"
    source = scan_video(video_path)
    if source.packets == 0:
        raise MuxError(f"{video_path}: its video stream ({described}) holds no packets")
    stamps = _timestamps(video_path, source)
    refused: list[str] = []
    mismatched = False
    for fmt in _containers(out_path):
        path = out_path.with_suffix(CONTAINERS[fmt])
        try:
            with atomic_path(path) as tmp:
                _copy(video_path, tmp, fmt, music, sample_rate, stamps)
                written = _read_back(video_path, path, tmp)
                _verify(video_path, path, source, written, copied=True)
        except MuxVerificationError as exc:  # it took the stream but did not keep it whole: another may
            refused.append(f"{fmt}: {exc}")
            mismatched = True
            continue
        except (av.error.FFmpegError, ValueError, _NoMusicCodec) as exc:  # this container refused it
            refused.append(f"{fmt}: {_reason(exc)}")
            continue
        if refused:
            log.info("%s: %s video went into %s (%s)", video_path, described, fmt, "; ".join(refused))
        exact = written.digest == source.digest
        if not exact:  # e.g. H.264 in MPEG-TS framing, stored length-prefixed by mp4 and Matroska
            log.info("%s: %s stores the %s packets in its own framing (same frames, other bytes)", path, fmt,
                     source.codec)
        return MuxResult(path, fmt, written.codec, False, written.packets, written.duration_s, source.duration_s,
                         exact, tuple(refused))
    if mismatched:  # a container took the codec, so re-encoding is not called for: this is an error
        raise MuxVerificationError(f"{video_path}: no output kept its {described} video whole; nothing written "
                                   f"({'; '.join(refused)})")
    return _reencode_into(video_path, out_path, music, sample_rate, source, described, tuple(refused))


def scan_video(path: str | Path) -> VideoTrack:
    """Demux ``path``'s first video stream (no decoding): its data packets' timestamps and bytes.
    Packets without data (the demuxer's flush packet at the end) are not counted."""
    digest = hashlib.blake2b(digest_size=16)
    pts, dts, durations = [], [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, time_base = _codec_name(stream), stream.time_base
        for packet in container.demux(stream):
            if not packet.size:
                continue
            digest.update(memoryview(packet))
            pts.append(packet.pts)
            dts.append(packet.dts)
            durations.append(packet.duration or 0)
    return VideoTrack(codec, Fraction(time_base), tuple(pts), tuple(dts), tuple(durations), digest.hexdigest())


def _prepare_music(video_path: Path, music: np.ndarray, sample_rate: int, original: OriginalAudio,
                   duck_db: float) -> np.ndarray:
    """``music [C, n]`` float32 in [-1, 1], mono or stereo, mixed with the video's own sound per ``original``."""
    music = np.atleast_2d(np.asarray(music, np.float32))
    if original != "drop":
        with av.open(str(video_path)) as probe:
            has_audio = bool(probe.streams.audio)
        if has_audio:
            sound = read_audio(video_path, sample_rate=sample_rate, mono=False)[0]
            music = mix_original(music, sound, original, duck_db)
    music = np.ascontiguousarray(np.clip(music, -1.0, 1.0), dtype=np.float32)
    return music if music.shape[0] <= 2 else np.ascontiguousarray(music[:2])


def _containers(out_path: Path) -> list[str]:
    """The formats to try, ``out_path``'s own first."""
    first = _BY_SUFFIX.get(out_path.suffix.lower(), "mp4")
    return [first] + [fmt for fmt in CONTAINERS if fmt != first]


def _timestamps(video_path: Path, track: VideoTrack) -> tuple[list[int], list[int]] | None:
    """``(pts, dts)`` for every packet where the demuxer left decoding timestamps out, else None
    (its own are kept).

    With B-frames the decoding order is the presentation order of the sorted pts, shifted back
    just enough that no packet is decoded after it is shown: ``dts[i] = sorted(pts)[i] - shift``
    with ``shift = max(sorted(pts)[i] - pts[i])``, the demuxer's own kept where it gave one (when
    the two together still rise and never pass the pts; else all rebuilt). A raw elementary
    stream (``.hevc``) has no timestamps at all: its presentation order is read by decoding
    (:func:`_shown_order`), one frame step per packet. Anything else is left to the muxer to judge."""
    if all(d is not None for d in track.dts):
        return None
    pts = list(track.pts)
    if all(p is None for p in pts):
        steps = [d for d in track.durations if d > 0]
        order = _shown_order(video_path, track.packets)
        if not steps or order is None:
            return None
        step = int(np.median(steps))
        pts = [rank * step for rank in order]
    if any(p is None for p in pts):
        return None
    ordered = sorted(pts)
    shift = max(s - p for s, p in zip(ordered, pts))
    rebuilt = [s - shift for s in ordered]
    kept = [d if d is not None else r for d, r in zip(track.dts, rebuilt)]  # the demuxer's own where it gave one
    valid = all(a < b for a, b in zip(kept, kept[1:])) and all(d <= p for d, p in zip(kept, pts))
    return pts, kept if valid else rebuilt


def _shown_order(video_path: Path, packets: int) -> list[int] | None:
    """For each data packet of a stream without timestamps, the place of its frame in presentation
    order: each packet is tagged with its index as pts and the decoder hands the tags back in the
    order it shows the frames. None when not every packet gives one frame."""
    ranks: dict[int, int] = {}
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        index = 0
        for packet in container.demux(stream):
            if packet.size:
                packet.pts, index = index, index + 1
            for frame in stream.decode(packet):
                if frame.pts is not None and frame.pts not in ranks:
                    ranks[frame.pts] = len(ranks)
    if sorted(ranks) != list(range(packets)):
        return None
    return [ranks[i] for i in range(packets)]


def _copy(video_path: Path, tmp: Path, fmt: str, music: np.ndarray, sample_rate: int,
          stamps: tuple[list[int], list[int]] | None) -> None:
    """Write ``tmp`` as ``fmt``: every data packet of the video stream, in order (with ``stamps``'
    pts and dts where given), and the music."""
    with av.open(str(video_path)) as source, av.open(str(tmp), "w", format=fmt) as target:
        video_in = source.streams.video[0]
        if fmt == "ogg" and _codec_name(video_in) not in _OGG_VIDEO:
            raise ValueError(f"'ogg' format does not support {_codec_name(video_in)!r} codec")
        # opaque: the codec is taken as it is; no encoder is looked up (there is none for Theora here)
        video_out = target.add_stream_from_template(video_in, opaque=True)
        video_out.metadata.update(video_in.metadata)
        audio = _MusicTrack(target, fmt, music, sample_rate, _start_s(video_in))
        index, last = 0, None
        for packet in source.demux(video_in):
            if not packet.size:  # the demuxer's flush packet: no data
                continue
            if stamps is not None:
                packet.pts, packet.dts = stamps[0][index], stamps[1][index]
            index += 1
            stamp = packet.dts if packet.dts is not None else packet.pts
            last = float(stamp * packet.time_base) if stamp is not None else last
            audio.write_until(last)  # keep the streams interleaved
            packet.stream = video_out
            _write_packet(target, packet)
        audio.finish()


def _write_packet(target: av.container.OutputContainer, packet: av.Packet) -> None:
    """One video packet into the output (a seam for tests that break the copy on purpose)."""
    target.mux(packet)


def verify_mux(video_path: str | Path, output_path: str | Path, frames: int | None = None) -> VideoTrack:
    """Check that ``output_path`` holds ``video_path``'s video: as many video packets (or ``frames``,
    for a re-encoded picture) and the same duration. The output's track; raises
    :class:`MuxVerificationError` naming both files otherwise (also when it cannot be read)."""
    video_path, output_path = Path(video_path), Path(output_path)
    written = _read_back(video_path, output_path, output_path)
    _verify(video_path, output_path, scan_video(video_path), written, copied=frames is None, frames=frames)
    return written


def _read_back(video_path: Path, path: Path, written: Path) -> VideoTrack:
    """:func:`scan_video` of the output ``written`` (to become ``path``); unreadable is a mismatch."""
    try:
        return scan_video(written)
    except (av.error.FFmpegError, IndexError) as exc:  # IndexError: no video stream in it
        raise MuxVerificationError(f"{video_path}: the output {path.name} cannot be read back "
                                   f"({_reason(exc)}); not written") from exc


def _verify(video_path: Path, path: Path, source: VideoTrack, written: VideoTrack, copied: bool,
            frames: int | None = None) -> None:
    """Raise :class:`MuxVerificationError` unless ``written`` has the input's packet count (``frames``
    for a re-encode) and video duration, to within 1.5 ticks of the coarser time base (1 ms at least):
    the first and last timestamps and the last duration may each be rounded once to the output's ticks."""
    expected = source.packets if copied else frames
    what = "video packets" if copied else "frames"
    if written.packets != expected:
        raise MuxVerificationError(f"{video_path}: the output {path.name} holds {written.packets} {what}, the input "
                                   f"{expected}; not written")
    tolerance = max(1.5 * float(max(source.time_base, written.time_base)), 0.001)
    if abs(written.duration_s - source.duration_s) > tolerance:
        raise MuxVerificationError(f"{video_path}: the output {path.name} has {written.duration_s:.4f} s of video, "
                                   f"the input {source.duration_s:.4f} s; not written")


def _reencode_into(video_path: Path, out_path: Path, music: np.ndarray, sample_rate: int, source: VideoTrack,
                   described: str, refused: tuple[str, ...]) -> MuxResult:
    """The last way: decode the picture and encode it as H.264 (MPEG-4 Part 2 where this FFmpeg has
    no H.264 encoder) into an mp4 (Matroska when ``out_path`` asks for it), timestamps kept."""
    encoder = next((name for name in _REENCODERS if name in av.codecs_available), None)
    fmt = "matroska" if _BY_SUFFIX.get(out_path.suffix.lower()) == "matroska" else "mp4"
    tried = "; ".join(refused)
    if encoder is None:
        raise MuxError(f"{video_path}: no container takes its {described} video ({tried}) and this FFmpeg has "
                       f"no encoder to re-encode it ({', '.join(_REENCODERS)})")
    path = out_path.with_suffix(CONTAINERS[fmt])
    log.warning("%s: no container takes its %s video as it is (%s); re-encoding the picture as %s into %s",
                video_path, described, tried, encoder, path.name)
    try:
        with atomic_path(path) as tmp:
            frames = _reencode(video_path, tmp, fmt, encoder, music, sample_rate)
            written = _read_back(video_path, path, tmp)
            _verify(video_path, path, source, written, copied=False, frames=frames)
    except MuxVerificationError:
        raise
    except (av.error.FFmpegError, ValueError, _NoMusicCodec) as exc:
        raise MuxError(f"{video_path}: no container takes its {described} video ({tried}), and re-encoding it "
                       f"with {encoder} into {fmt} failed: {_reason(exc)}") from exc
    return MuxResult(path, fmt, written.codec, True, written.packets, written.duration_s, source.duration_s,
                     False, refused)


def _reencode(video_path: Path, tmp: Path, fmt: str, encoder: str, music: np.ndarray, sample_rate: int) -> int:
    """Decode every frame and encode it into ``tmp`` (``fmt``) with the input's timestamps and time
    base (variable frame rates stay as they are); sides rounded up to even for yuv420p. The number
    of frames encoded."""
    with av.open(str(video_path)) as source, av.open(str(tmp), "w", format=fmt) as target:
        video_in = source.streams.video[0]
        rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
        video_out = target.add_stream(encoder, rate=rate, options=_REENCODE_OPTIONS.get(encoder, {}))
        width, height = video_in.codec_context.width, video_in.codec_context.height
        video_out.width, video_out.height, video_out.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
        time_base = video_in.time_base
        video_out.time_base = video_out.codec_context.time_base = time_base
        audio = _MusicTrack(target, fmt, music, sample_rate, _start_s(video_in))
        step = max(1, int(round(1 / (rate * time_base)))) if rate else 1
        frames, last = 0, None
        for frame in source.decode(video_in):
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None or (last is not None and pts <= last):  # none, or not after the last: one step on
                pts = 0 if last is None else last + step
            picture = frame.reformat(width=video_out.width, height=video_out.height, format="yuv420p")
            picture.pts, picture.time_base, last = pts, time_base, pts
            frames += 1
            audio.write_until(float(pts * time_base))
            for packet in video_out.encode(picture):
                target.mux(packet)
        for packet in video_out.encode(None):
            target.mux(packet)
        audio.finish()
    return frames


class _NoMusicCodec(Exception):
    """This FFmpeg has no music encoder that the container takes."""


class _MusicTrack:
    """The music as one audio stream of ``target``: AAC at ``sample_rate``, or for WebM and Ogg
    Opus at 48 kHz (resampled) or Vorbis. Frames are written up to a time so they interleave with
    the video; the first sample sits at ``start_s``, the video's first frame."""

    def __init__(self, target: av.container.OutputContainer, fmt: str, music: np.ndarray, sample_rate: int,
                 start_s: float):
        codec = next((c for c in _MUSIC_CODECS.get(fmt, ("aac",)) if c in av.codecs_available), None)
        if codec is None:
            raise _NoMusicCodec(f"no music encoder for {fmt} (needs one of {', '.join(_MUSIC_CODECS[fmt])})")
        rate = 48000 if codec == "libopus" else sample_rate
        self.layout = "mono" if music.shape[0] == 1 else "stereo"
        self.music = music if rate == sample_rate else _resample(music, sample_rate, rate, self.layout)
        self.rate, self.target = rate, target
        self.stream = target.add_stream(codec, rate=rate, layout=self.layout)
        if codec == "aac":  # FFmpeg's default (69 kb/s mono at 32 kHz) moves peaks by up to 4 dB at drum hits
            self.stream.bit_rate = MUSIC_AAC_BIT_RATE
        self.stream.time_base = Fraction(1, rate)
        self.frames = self._frames(int(round(start_s * rate)))
        self.pending = next(self.frames, None)

    def _frames(self, offset: int) -> Iterator[av.AudioFrame]:
        for i in range(0, self.music.shape[1], AAC_FRAME):
            chunk = np.ascontiguousarray(self.music[:, i : i + AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts, frame.time_base = self.rate, offset + i, Fraction(1, self.rate)
            yield frame

    def write_until(self, seconds: float | None) -> None:
        while self.pending is not None and seconds is not None and self.pending.pts / self.rate <= seconds:
            self.target.mux(self.stream.encode(self.pending))
            self.pending = next(self.frames, None)

    def finish(self) -> None:
        while self.pending is not None:
            self.target.mux(self.stream.encode(self.pending))
            self.pending = next(self.frames, None)
        self.target.mux(self.stream.encode(None))


def _resample(music: np.ndarray, rate: int, to: int, layout: str) -> np.ndarray:
    """``music [C, n]`` at ``rate`` -> ``[C, n * to / rate]`` at ``to``, with FFmpeg's resampler."""
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(music), format="fltp", layout=layout)
    frame.sample_rate = rate
    chunks = [out.to_ndarray() for out in resampler.resample(frame)]
    chunks += [out.to_ndarray() for out in resampler.resample(None)]
    return np.ascontiguousarray(np.concatenate(chunks, axis=1) if chunks else music[:, :0], dtype=np.float32)


def _start_s(stream: av.video.stream.VideoStream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _codec_name(stream: av.video.stream.VideoStream) -> str:
    """The codec's own name (``av1``), not its decoder's (``libdav1d``)."""
    return stream.codec_context.codec.canonical_name


def _reason(exc: Exception) -> str:
    """The error without the temporary file's name that FFmpeg's errors carry."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
