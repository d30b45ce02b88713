"""mux_music over real encodes of each codec in its natural container.

Each input is encoded here with PyAV's FFmpeg (a codec this FFmpeg cannot encode is skipped with the
reason). Theora is the exception: PyAV's wheels carry a Theora decoder but no encoder, so when
``libtheora`` is missing the input is ``theora_64x48.ogv`` beside this file, 2 s made by FFmpeg
7.0.2's libtheora + libvorbis (``-f lavfi testsrc=size=64x48:rate=12``, ``sine=440``).

For every copy: the output's video packets are the input's, byte for byte and in order; the
decoded pictures are the same; packet count and video duration agree; the music track is there;
nothing else is left in the output folder.
"""

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from vmas.media import mux
from vmas.media.mux import CONTAINERS, MuxError, MuxVerificationError, mux_music, scan_video, verify_mux

HERE = Path(__file__).parent
SR = 32000
MUSIC = (0.2 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)  # [n]: 2 s, as long as the videos
AV1_ENCODERS = ("libaom-av1", "libsvtav1", "librav1e")


def _encoder(*names: str) -> str:
    found = next((n for n in names if n in av.codecs_available), None)
    if found is None:
        pytest.skip(f"this FFmpeg has no encoder among {', '.join(names)}")
    return found


def _encode(path: Path, codec: str, fmt: str | None = None, options: dict | None = None, pix_fmt: str = "yuv420p",
            frames: int = 48, fps: int = 24, size: tuple[int, int] = (64, 64)) -> Path:
    """``frames`` frames (2 s at 24 fps) of a bar moving over a changing background, encoded with ``codec``."""
    codec = _encoder(codec)
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps, options=options or {})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(frames):
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 0], a[..., 1] = (np.arange(w) * 4 + i * 5) % 255, (i * 9) % 255
            a[:, (i * 3) % w : (i * 3) % w + 8] = 255
            frame = av.VideoFrame.from_ndarray(a, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _theora(path: Path) -> Path:
    if "libtheora" in av.codecs_available:
        return _encode(path, "libtheora", "ogg")
    return Path(shutil.copy(HERE / "theora_64x48.ogv", path))


def _packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _pictures(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").tobytes() for f in c.decode(c.streams.video[0])]


def _audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return sum(f.samples for f in c.decode(stream)) / stream.sample_rate


HEVC = {"x265-params": "log-level=error"}  # x265's defaults: B-frames (4, pyramid)
CASES = {  # id: (encoder, its container, suffix, options, pixel format) -> the container expected for an .mp4 target
    "hevc-mkv": (("libx265", "matroska", ".mkv", HEVC, "yuv420p"), "mp4"),
    "hevc-mp4": (("libx265", "mp4", ".mp4", HEVC, "yuv420p"), "mp4"),
    "vp8-webm": (("libvpx", "webm", ".webm", {}, "yuv420p"), "matroska"),
    "vp9-webm": (("libvpx-vp9", "webm", ".webm", {}, "yuv420p"), "mp4"),
    "mpeg2-mpg": (("mpeg2video", "mpeg", ".mpg", {"bf": "2"}, "yuv420p"), "mp4"),
    "mpeg2-ts": (("mpeg2video", "mpegts", ".ts", {"bf": "2"}, "yuv420p"), "mp4"),
    "mpeg4-avi": (("mpeg4", "avi", ".avi", {"bf": "2"}, "yuv420p"), "mp4"),
    "av1-mkv": ((AV1_ENCODERS, "matroska", ".mkv", {}, "yuv420p"), "mp4"),
    "av1-webm": ((AV1_ENCODERS, "webm", ".webm", {}, "yuv420p"), "mp4"),
    "av1-mp4": ((AV1_ENCODERS, "mp4", ".mp4", {}, "yuv420p"), "mp4"),
    "qtrle-mov": (("qtrle", "mov", ".mov", {}, "rgb24"), "mov"),  # QuickTime's own: mp4 and Matroska refuse it
}


def _source(tmp_path: Path, case: str) -> Path:
    if case == "theora-ogv":
        return _theora(tmp_path / "in.ogv")
    (codec, fmt, suffix, options, pix_fmt), _ = CASES[case]
    codec = _encoder(*codec) if isinstance(codec, tuple) else codec
    return _encode(tmp_path / f"in{suffix}", codec, fmt, options, pix_fmt)


def _check_copy(source: Path, result: mux.MuxResult, container: str, out_dir: Path) -> None:
    assert result.container == container and result.path.suffix == CONTAINERS[container] and result.path.is_file()
    assert not result.reencoded and result.bit_exact
    assert _packets(result.path) == _packets(source)  # every packet, the same bytes in the same order
    assert _pictures(result.path) == _pictures(source)
    before, after = scan_video(source), scan_video(result.path)
    assert after.packets == before.packets == result.packets
    assert abs(after.duration_s - before.duration_s) <= 0.002 and result.duration_s == after.duration_s
    assert abs(_audio_seconds(result.path) - 2.0) < 0.1
    assert sorted(p.name for p in out_dir.iterdir()) == [result.path.name]  # no temporary file left


@pytest.mark.parametrize("case", [*CASES, "theora-ogv"])
def test_each_codec_is_copied_whole_into_a_container_that_takes_it(tmp_path, case):
    source = _source(tmp_path, case)
    expected = "matroska" if case == "theora-ogv" else CASES[case][1]
    result = mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.mp4")
    assert result.path == (tmp_path / "out" / "clip").with_suffix(CONTAINERS[expected])
    _check_copy(source, result, expected, tmp_path / "out")
    assert all(reason.split(":")[0] in CONTAINERS for reason in result.refused)
    if expected != "mp4":
        assert result.refused[0].startswith("mp4: ") and source.name not in result.refused[0]


def test_hevc_packets_without_dts_are_kept(tmp_path):
    """Matroska stores no decoding timestamps: with B-frames the demuxer gives the first packets,
    the key frame (POC 0) among them, ``dts=None``. They were dropped; now each is written."""
    source = _source(tmp_path, "hevc-mkv")
    track = scan_video(source)
    missing = [i for i, d in enumerate(track.dts) if d is None]
    assert missing and 0 in missing  # the real thing: the key frame has no dts
    pts, dts = mux._timestamps(source, track)
    assert all(dts[i] == d for i, d in enumerate(track.dts) if d is not None)  # the demuxer's own where it had them
    assert all(d <= p for d, p in zip(dts, pts)) and all(a < b for a, b in zip(dts, dts[1:]))
    for target in ("clip.mp4", "clip.mkv"):
        result = mux_music(source, MUSIC, SR, tmp_path / target.split(".")[1] / target)
        _check_copy(source, result, {"mp4": "mp4", "mkv": "matroska"}[target.split(".")[1]], result.path.parent)
        assert result.packets == track.packets == 48


@pytest.mark.parametrize("case,target,container", [("vp8-webm", "clip.webm", "webm"),
                                                   ("vp9-webm", "clip.webm", "webm"),
                                                   ("av1-mkv", "clip.webm", "webm"),
                                                   ("theora-ogv", "clip.ogv", "ogg"),
                                                   ("hevc-mkv", "clip.mkv", "matroska")])
def test_the_target_suffix_picks_the_container_first(tmp_path, case, target, container):
    source = _source(tmp_path, case)
    result = mux_music(source, MUSIC, SR, tmp_path / "out" / target)
    _check_copy(source, result, container, tmp_path / "out")
    assert result.refused == ()
    if container in ("webm", "ogg"):  # no AAC there: the music is Opus
        with av.open(str(result.path)) as c:
            assert c.streams.audio[0].codec_context.name == "opus"


def _audio(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().mean(0) for f in c.decode(c.streams.audio[0])])


def test_theora_with_its_own_vorbis_sound_mixed_in(tmp_path):
    source = Path(shutil.copy(HERE / "theora_64x48.ogv", tmp_path / "in.ogv"))  # Theora + Vorbis, as found
    silence = np.zeros_like(MUSIC)
    kept = mux_music(source, silence, SR, tmp_path / "keep" / "clip.mp4", original="keep")
    dropped = mux_music(source, silence, SR, tmp_path / "drop" / "clip.mp4", original="drop")
    _check_copy(source, kept, "matroska", tmp_path / "keep")
    loud, quiet = np.sqrt(np.mean(_audio(kept.path) ** 2)), np.sqrt(np.mean(_audio(dropped.path) ** 2))
    assert loud > 0.05 and quiet < 1e-3  # the film's 440 Hz tone is there only when kept


def test_a_raw_hevc_stream_gets_timestamps_and_keeps_its_frames(tmp_path):
    """A raw ``.hevc`` stream has no timestamps at all; the presentation order comes from decoding."""
    source = _encode(tmp_path / "in.hevc", "libx265", "hevc", HEVC)
    assert all(p is None for p in scan_video(source).pts)
    result = mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.mp4")
    assert result.container == "mp4" and not result.reencoded and result.packets == 48
    assert not result.bit_exact  # mp4 stores HEVC length-prefixed, not in start codes
    assert _pictures(result.path) == _pictures(source)
    assert abs(result.duration_s - 2.0) < 0.002


def test_a_codec_no_container_takes_is_re_encoded(tmp_path, caplog):
    source = _encode(tmp_path / "in.apng", "apng", "apng", pix_fmt="rgb24", size=(63, 47))  # odd sides too
    with caplog.at_level("WARNING", logger="vmas.media.mux"):
        result = mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.mkv")
    assert result.reencoded and result.container == "matroska" and result.path.name == "clip.mkv"
    assert result.video_codec in ("h264", "mpeg4") and not result.bit_exact
    assert len(result.refused) == len(CONTAINERS) and all("apng" in r for r in result.refused)
    assert "re-encoding" in caplog.text and "in.apng" in caplog.text
    assert len(_pictures(result.path)) == 48 == result.packets
    assert abs(result.duration_s - scan_video(source).duration_s) < 0.002
    assert abs(_audio_seconds(result.path) - 2.0) < 0.1


def test_the_error_names_the_file_the_codec_and_what_was_tried(tmp_path, monkeypatch):
    source = _encode(tmp_path / "in.apng", "apng", "apng", pix_fmt="rgb24")
    monkeypatch.setattr(mux, "_REENCODERS", ("no-such-encoder",))
    with pytest.raises(MuxError) as caught:
        mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.mp4")
    message = str(caught.value)
    assert str(source) in message and "apng 64x64" in message and "no-such-encoder" in message
    assert all(f"{fmt}: " in message for fmt in CONTAINERS)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_dropped_packet_is_an_error_never_a_success(tmp_path, monkeypatch):
    source = _encode(tmp_path / "in.avi", "mpeg4", "avi", {"bf": "2"})

    def lossy(target, packet):  # loses the packet shown at frame 10, in every container tried
        if packet.pts != 10:
            target.mux(packet)

    monkeypatch.setattr(mux, "_write_packet", lossy)
    with pytest.raises(MuxVerificationError, match=r"in\.avi.*47 video packets, the input 48"):
        mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.mp4")
    assert not list((tmp_path / "out").iterdir())  # nothing written, not even a temporary file


def test_a_truncated_output_fails_the_check(tmp_path):
    source = _source(tmp_path, "vp8-webm")
    result = mux_music(source, MUSIC, SR, tmp_path / "clip.mp4")
    assert verify_mux(source, result.path).packets == 48
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(result.path.read_bytes()[: result.path.stat().st_size * 6 // 10])
    with pytest.raises(MuxVerificationError, match=r"in\.webm.*cut\.mkv"):
        verify_mux(source, cut)


def test_a_container_that_garbles_the_timing_is_passed_over(tmp_path):
    """VP8 in Ogg from a 1 ms time base reads back 80 ms short (the Ogg mapping counts whole
    frames): the check catches it and the next container is used."""
    source = _source(tmp_path, "vp8-webm")
    result = mux_music(source, MUSIC, SR, tmp_path / "out" / "clip.ogv")
    assert result.refused[0].startswith("ogg: ") and "s of video" in result.refused[0]
    _check_copy(source, result, "matroska", tmp_path / "out")
