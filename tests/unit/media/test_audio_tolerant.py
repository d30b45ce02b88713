"""Reading audio past damaged packets: real AAC and AC-3 encodes with one packet truncated, overwritten
or given a wrong header; the track comes back whole in length, the gap silent, the damage counted."""

import logging

import av
import numpy as np
import pytest

from vmas.media.audio import AudioReadError, decode_audio, read_audio
from vmas.media.mux import mux_music

SR = 48000
SECONDS = 3.0
FPS = 10


def _encode(path, fmt: str, codec: str, damage=None, at: int = -1) -> None:
    """A 3 s video (MPEG-4 Part 2, 32 x 32) with a stereo 440 Hz tone in ``codec``; ``damage(bytes) ->
    bytes`` replaces the data of audio packet ``at`` as the muxer writes it."""
    with av.open(str(path), "w", format=fmt) as c:
        video = c.add_stream("mpeg4", rate=FPS)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        audio = c.add_stream(codec, rate=SR, layout="stereo")
        n = int(SECONDS * SR)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)
        tone = np.stack([tone, tone])
        size = audio.codec_context.frame_size or 1024
        packets = []
        for i in range(0, n, size):
            chunk = np.ascontiguousarray(np.pad(tone[:, i : i + size], ((0, 0), (0, max(0, i + size - n)))))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = SR, i
            packets += audio.encode(frame)
        packets += audio.encode(None)
        if damage is not None:
            k = at % len(packets)
            p = packets[k]
            bad = av.Packet(damage(bytes(p)))
            bad.pts, bad.dts, bad.duration, bad.time_base, bad.stream = p.pts, p.dts, p.duration, p.time_base, audio
            packets[k] = bad
        timed = [(float(p.pts * p.time_base), p) for p in packets]
        for i in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts = i
            timed += [(float(p.pts * p.time_base), p) for p in video.encode(frame)]
        timed += [(float(p.pts * p.time_base), p) for p in video.encode(None)]
        for _, packet in sorted(timed, key=lambda t: t[0]):
            c.mux(packet)


def _audio_packets(path) -> list[tuple[int, int]]:
    """``(file offset, size)`` of every audio packet."""
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size]


def _old_read(path, rate: int = 16000) -> np.ndarray:
    """How audio was read before: every frame through one resampler, any error fatal."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        chunks = [out.to_ndarray() for frame in c.decode(stream) for out in resampler.resample(frame)]
    return np.concatenate(chunks, axis=1)


@pytest.mark.parametrize("fmt,suffix", [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_a_truncated_last_packet_costs_its_frame_not_the_track(tmp_path, caplog, fmt, suffix):
    clean, damaged = tmp_path / f"clean{suffix}", tmp_path / f"damaged{suffix}"
    _encode(clean, fmt, "aac")
    _encode(damaged, fmt, "aac", damage=lambda data: data[: len(data) // 3], at=-1)
    with pytest.raises(av.error.InvalidDataError):  # what failed the whole track before
        _old_read(damaged)
    reference = decode_audio(clean).audio
    with caplog.at_level(logging.WARNING, logger="vmas.media.audio"):
        decoded = decode_audio(damaged)
    assert decoded.damaged_packets == 1 and decoded.packets == len(_audio_packets(damaged))
    assert abs(decoded.audio.shape[1] - reference.shape[1]) <= 1  # the lost frame's time is kept
    assert 0.015 < decoded.silence_s < 0.03  # one AAC frame at 48 kHz: 21.3 ms
    n = reference.shape[1] - 2048
    assert np.abs(decoded.audio[:, :n] - reference[:, :n]).max() < 1e-4  # all before it untouched
    assert np.abs(decoded.audio[:, -512:]).max() < 1e-6  # and the gap silent
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(damaged) in warning.getMessage() and f"1 of {decoded.packets} audio packets" in warning.getMessage()


def test_a_packet_overwritten_in_the_file_leaves_the_rest_in_place(tmp_path, caplog):
    """One AAC packet in the middle of a Matroska file overwritten on disk: the audio after it keeps its time."""
    clean, damaged = tmp_path / "clean.mkv", tmp_path / "damaged.mkv"
    _encode(clean, "matroska", "aac")
    data = bytearray(clean.read_bytes())
    offset, size = _audio_packets(clean)[60]
    payload = offset + size // 2  # past Matroska's block header, inside the AAC data
    data[payload : offset + size] = bytes([0xFF]) * (offset + size - payload)
    damaged.write_bytes(bytes(data))
    reference = decode_audio(clean, sample_rate=16000).audio
    with caplog.at_level(logging.WARNING, logger="vmas.media.audio"):
        audio, rate = read_audio(damaged, sample_rate=16000, mono=False)
    assert rate == 16000 and abs(audio.shape[1] - reference.shape[1]) <= 1
    assert any(str(damaged) in r.getMessage() and "could not be decoded" in r.getMessage() for r in caplog.records)
    diff = np.abs(audio[:, : reference.shape[1]] - reference[:, : audio.shape[1]]).max(0)
    bad = np.flatnonzero(diff > 1e-3) / 16000
    assert bad.size and bad.min() > 1.2 and bad.max() < 1.5  # only around packet 60 (1.28 s): no shift after it


def test_an_ac3_frame_with_a_damaged_header_is_converted_not_fatal(tmp_path):
    """A wrong channel mode in one AC-3 frame's header makes the decoder give that frame in 5.1: read
    through one resampler set up for stereo, that failed the track ("Frame does not match
    AudioResampler setup", or channel counts that do not concatenate)."""
    clean, damaged = tmp_path / "clean.mkv", tmp_path / "damaged.mkv"
    _encode(clean, "matroska", "ac3")
    data = bytearray(clean.read_bytes())
    offset, _ = _audio_packets(clean)[40]
    sync = data.index(b"\x0b\x77", offset)  # the AC-3 frame's sync word
    data[sync + 6] = (7 << 5) | (data[sync + 6] & 0x1F)  # acmod 3/2: five full-range channels
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        _old_read(damaged)
    reference, decoded = decode_audio(clean), decode_audio(damaged)
    assert decoded.audio.shape == reference.audio.shape and decoded.converted_frames == 1
    assert np.abs(decoded.audio).max() < 0.5  # the odd frame is downmixed, not noise


def test_nothing_decodable_is_an_audio_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    _encode(path, "mp4", "aac")
    data = bytearray(path.read_bytes())
    for offset, size in _audio_packets(path):
        data[offset : offset + size] = bytes([0xFF]) * size
    path.write_bytes(bytes(data))
    with pytest.raises(AudioReadError, match=rf"{path}: audio stream .*aac.*none of its \d+ packets") as caught:
        read_audio(path)
    assert isinstance(caught.value, ValueError) and caught.value.reason == "audio_unreadable"


def test_ducking_the_original_sound_of_a_damaged_video(tmp_path):
    """``--original-audio duck`` reads the video's own sound: a truncated packet no longer fails the mux."""
    source = tmp_path / "damaged.mp4"
    _encode(source, "mp4", "aac", damage=lambda data: data[: len(data) // 3], at=-1)
    sr = 32000
    music = (0.2 * np.sin(2 * np.pi * 1000 * np.arange(int(SECONDS * sr)) / sr)).astype(np.float32)[None]
    result = mux_music(source, music, sr, tmp_path / "out.mp4", original="duck", duck_db=-12.0)
    mixed = decode_audio(result.path).audio.mean(0)
    assert abs(mixed.size / sr - SECONDS) < 0.05
    spectrum = np.abs(np.fft.rfft(mixed[: 2 * sr]))
    freqs = np.fft.rfftfreq(2 * sr, 1 / sr)
    at = {f: spectrum[np.argmin(np.abs(freqs - f))] for f in (440, 1000)}
    ratio_db = 20 * np.log10(at[440] / at[1000])
    assert -12 - 3 < ratio_db + 20 * np.log10(0.2 / 0.3) < -12 + 3  # the original tone sits 12 dB under
