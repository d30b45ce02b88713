"""`generate` end to end with a tiny model: the picture is copied bit for bit, the music is as long as
the video, long videos span several windows, variants and batches work, bad inputs leave nothing."""

import json
from pathlib import Path
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from vmas.codec import build_encodec, encodec_xp_config, load_codec, save_codec
from vmas.config import load_config
from vmas.generation.generate import GenerationSettings, generate, loudness_normalize, output_names, plan_windows
from vmas.generation.video_input import VideoInputError
from vmas.io import file_sha256
from vmas.media import write_mp4
from vmas.models.builders import build_vmas
from vmas.models.package import load_model_package
from vmas.models.package import save_model
from vmas.models.sample import SamplingSettings

FAST = GenerationSettings(sampling=SamplingSettings(guidance=2.0, top_k=50))


@pytest.fixture(scope="module")
def package(tmp_path_factory, repo):
    root = tmp_path_factory.mktemp("model")
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["model.music_decoder.num_layers=1"])
    xp = encodec_xp_config(n_filters=4, dimension=cfg.codec.dimension, lstm=0)
    torch.manual_seed(0)
    codec = build_encodec(xp).train()
    codec(torch.randn(4, 1, 32000) * 0.1)  # initialises the codebooks (k-means on the first batch), as training does
    save_codec(codec.eval(), xp, root / "codec.bin")
    model = build_vmas(cfg, load_codec(root / "codec.bin").codebook_embeddings(), load_pretrained=False)
    save_model(model, cfg, root / "codec.bin", file_sha256(root / "codec.bin"), root / "model.pt")
    return load_model_package(root / "model.pt")


def _video(path, seconds, size=(96, 64), fps=25, audio=True):
    w, h = size
    n = int(seconds * fps)
    frames = [np.full((h, w, 3), (i * 7) % 255, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        f[:, (i * 3) % w : (i * 3) % w + 8] = 255  # a moving bar: some motion
    sound = (0.1 * np.sin(np.arange(int(seconds * 32000)) * 0.05))[None].astype(np.float32) if audio else None
    write_mp4(path, frames, fps, audio=sound, sample_rate=32000 if audio else None)
    return path


def _encoded(path, codec: str, rate: int, frames: int, size: tuple[int, int], pix_fmt: str, fmt: str | None = None):
    """``frames`` flat frames getting brighter, encoded with ``codec`` at ``rate`` fps (PyAV)."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * 15) % 255, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _audio_seconds(path):
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.sample_rate


def test_plan_windows_cover_the_video_with_overlaps():
    assert plan_windows(150, 200, 100) == [plan_windows(150, 200, 100)[0]] and plan_windows(150, 200, 100)[0].end == 150
    windows = plan_windows(500, 200, 100)
    assert [(w.start, w.end, w.prompt) for w in windows] == [(0, 200, 0), (100, 300, 100), (200, 400, 100), (300, 500, 100)]
    with pytest.raises(ValueError):
        plan_windows(0, 200, 100)


def test_loudness_normalize_hits_the_target():
    import torchaudio.functional as AF

    sr = 32000
    tone = (0.02 * np.sin(2 * np.pi * 440 * np.arange(sr * 3) / sr))[None].astype(np.float32)
    out, before = loudness_normalize(tone, sr, -14.0)
    assert before < -30 and abs(float(AF.loudness(torch.from_numpy(out), sr)) + 14.0) < 0.1
    assert np.abs(out).max() <= 0.89 + 1e-6
    silent, measured = loudness_normalize(np.zeros((1, sr)), sr, -14.0)
    assert measured is None and not silent.any()


def test_music_for_a_short_video(package, tmp_path):
    source = _video(tmp_path / "clip.mp4", 3.0)
    [result] = generate(package, [source], tmp_path / "out", FAST, progress=False)
    out = tmp_path / "out" / "clip.mp4"
    assert result["video"] == str(out) and _packets(out) == _packets(source)  # the picture, bit for bit
    assert abs(_audio_seconds(out) - 3.0) < 0.05
    sidecar = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert sidecar["windows"] == 1 and sidecar["seed"] == 0 and sidecar["model_sha256"] == package.sha256
    assert sidecar["mv_align"] is not None and 0 <= sidecar["mv_align"] <= 1
    assert (tmp_path / "out" / "clip.wav").is_file()
    before = out.stat().st_mtime_ns
    assert generate(package, [source], tmp_path / "out", FAST, progress=False) == [sidecar]  # up to date: kept
    assert out.stat().st_mtime_ns == before
    generate(package, [source], tmp_path / "out", FAST, progress=False, force=True)
    assert out.stat().st_mtime_ns != before


def test_a_long_video_spans_several_windows_as_one_piece(package, tmp_path):
    source = _video(tmp_path / "long.mp4", 10.0, audio=False)
    [result] = generate(package, [source], tmp_path / "out", FAST, progress=False)
    assert result["windows"] >= 3 and abs(_audio_seconds(result["video"]) - 10.0) < 0.05
    assert _packets(result["video"]) == _packets(source)


def test_variants_and_batches_are_reproducible_per_seed(package, tmp_path):
    a, b = _video(tmp_path / "a.mp4", 2.0), _video(tmp_path / "b.mp4", 2.0, size=(64, 64))
    two = GenerationSettings(sampling=FAST.sampling, variants=2)
    results = generate(package, [a, b], tmp_path / "batch", two, progress=False)
    assert sorted(r["video"].rsplit("/", 1)[1] for r in results) == ["a.v1.mp4", "a.v2.mp4", "b.v1.mp4", "b.v2.mp4"]
    wav = {r["video"].rsplit("/", 1)[1]: sf.read(r["wav"])[0] for r in results}
    assert np.abs(wav["a.v1.mp4"] - wav["a.v2.mp4"]).max() > 0.01  # another seed, other music
    [alone] = generate(package, [a], tmp_path / "alone", FAST, progress=False)  # seed 0 without the batch
    # the same codes; the codec's batched convolutions may round the last bit differently
    assert np.abs(sf.read(alone["wav"])[0] - wav["a.v1.mp4"]).max() <= 2 / 32768


def test_original_sound_kept_or_ducked(package, tmp_path):
    source = _video(tmp_path / "talk.mp4", 2.0)
    for mode in ("keep", "duck"):
        settings = GenerationSettings(sampling=FAST.sampling, original_audio=mode)
        [r] = generate(package, [source], tmp_path / mode, settings, progress=False)
        assert abs(_audio_seconds(r["video"]) - 2.0) < 0.05 and _packets(r["video"]) == _packets(source)


def test_portrait_large_and_variable_frame_rate_inputs(package, tmp_path):
    portrait = _video(tmp_path / "portrait.mp4", 1.5, size=(64, 112))
    large = _video(tmp_path / "large.mp4", 0.5, size=(2560, 1440), fps=10)
    vfr = tmp_path / "vfr.mp4"
    with av.open(str(vfr), "w") as c:  # frames at uneven times: 0, 0.04, 0.2, 0.24, 0.6, ...
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.time_base = Fraction(1, 1000)
        for i, t in enumerate([0, 40, 200, 240, 600, 640, 1000, 1040, 1400, 1500]):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, s.time_base
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    results = generate(package, [portrait, large, vfr], tmp_path / "out", FAST, progress=False)
    assert len(results) == 3
    for r in results:
        assert _packets(r["video"]) == _packets(r["input"])
        assert abs(_audio_seconds(r["video"]) - r["duration_s"]) < 0.05


def test_bad_inputs_are_named_and_leave_nothing(package, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "folder.mp4").mkdir()
    with av.open(str(tmp_path / "audio_only.m4a"), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=32000, layout="mono")
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 32000, i * 1024
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    bad = {"missing.mp4": "file not found", "empty.mp4": "empty file", "notes.mp4": "not a readable media file",
           "folder.mp4": "is a folder", "audio_only.m4a": "no video stream"}
    for name, reason in bad.items():
        with pytest.raises(VideoInputError, match=reason) as err:
            generate(package, [tmp_path / name], tmp_path / "out", FAST, progress=False)
        assert name in str(err.value)
    errors = []
    good = _video(tmp_path / "good.mp4", 1.0)
    results = generate(package, [*(tmp_path / n for n in bad), good], tmp_path / "out", FAST, progress=False,
                       on_error=lambda path, exc: errors.append(path.name))
    assert sorted(errors) == sorted(bad) and len(results) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.mp4", "good.wav"]


def test_a_codec_mp4_cannot_hold_goes_into_matroska(package, tmp_path):
    # VP8, as web videos often are: mp4 has no mapping for it
    source = _encoded(tmp_path / "web.webm", "libvpx", rate=10, frames=15, size=(64, 64), pix_fmt="yuv420p")
    [r] = generate(package, [source], tmp_path / "out", FAST, progress=False)
    assert r["video"].endswith("web.mkv") and _packets(r["video"]) == _packets(source)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["web.json", "web.mkv", "web.wav"]


def test_inputs_with_the_same_name_get_distinct_outputs(package, tmp_path):
    from pathlib import Path

    assert output_names([Path("a/clip.mp4"), Path("b/clip.mp4"), Path("b/other.mov")]) == \
        {Path("a/clip.mp4"): "a_clip", Path("b/clip.mp4"): "b_clip", Path("b/other.mov"): "other"}
    assert list(output_names([Path("x/a/clip.mp4"), Path("y/a/clip.mp4")]).values()) == ["a_clip", "a_clip-2"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = _video(tmp_path / "a" / "clip.mp4", 1.0), _video(tmp_path / "b" / "clip.mp4", 1.0, size=(64, 64))
    results = generate(package, [first, second], tmp_path / "out", FAST, progress=False)
    assert sorted(Path(r["video"]).name for r in results) == ["a_clip.mp4", "b_clip.mp4"]
    assert {r["input"] for r in results} == {str(first), str(second)}


def test_motion_is_streamed_in_chunks_with_the_same_result(tmp_path):
    from vmas.media.motion import clip_motion

    video = _video(tmp_path / "moving.mp4", 3.0, size=(96, 64))
    whole, fps = clip_motion(str(video), 0.0, 3.0, 64, chunk=1000)
    chunked, _ = clip_motion(str(video), 0.0, 3.0, 64, chunk=7)
    assert fps == 25 and len(whole) == 74 and np.allclose(whole, chunked)


def test_theora_ogg_and_animated_png_get_music(package, tmp_path, repo):
    """Ogg gives no average frame rate and APNG no duration: both are read off the packets, and the
    picture goes out copied (Theora, into Matroska: the output is named .mp4) or, for APNG, which no
    container takes, re-encoded."""
    import shutil

    ogv = Path(shutil.copy(repo / "tests" / "unit" / "media" / "theora_64x48.ogv", tmp_path / "theora.ogv"))
    apng = _encoded(tmp_path / "anim.apng", "apng", rate=12, frames=24, size=(64, 48), pix_fmt="rgb24", fmt="apng")
    from vmas.generation.video_input import inspect_video

    assert inspect_video(ogv).fps == pytest.approx(12) and inspect_video(apng).duration_s == pytest.approx(2, abs=0.1)
    results = generate(package, [ogv, apng], tmp_path / "out", FAST, progress=False)
    assert len(results) == 2, results  # neither skipped
    assert results[0]["video"].endswith("theora.mkv") and _packets(results[0]["video"]) == _packets(ogv)
    assert results[1]["video"].endswith("anim.mp4")  # re-encoded: no container takes APNG
    assert all(_audio_seconds(r["video"]) == pytest.approx(2, abs=0.1) for r in results)
