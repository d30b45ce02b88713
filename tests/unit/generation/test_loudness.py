"""Loudness and true peak, measured where the listener hears them: on the AAC track of the muxed file,
decoded. Synthesized drums and tones at several levels, a near-DC signal (an untrained model's kind
of output) and very dynamic music; the meter itself against BS.1770's reference values."""

import json

import numpy as np
import pytest
import torch

from vmas.config import load_config
from vmas.media import write_mp4
from vmas.media.audio import (aac_round_trip, decode_audio, integrated_loudness, limit_true_peak, master,
                              true_peak_db)
from vmas.media.mux import mux_music
from vmas.synth import plan_item
from vmas.synth.music import compose, render_music

TARGET, CEILING = -14.0, -1.0


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("picture") / "picture.mp4"
    write_mp4(path, [np.full((32, 32, 3), 3 * i, np.uint8) for i in range(60)], 10)  # 6 s
    return path


@pytest.fixture(scope="module")
def songs(repo):
    """``{genre: (music [n] float32, sample_rate)}``: 6 s of each synthetic genre (drums, bass, tones, pads)."""
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["synth.min_duration_s=7", "synth.max_duration_s=8"]).synth
    out = {}
    for i in range(8):
        plan = plan_item(cfg, i)
        if plan.genre not in out:
            music = render_music(plan, compose(plan))
            out[plan.genre] = (music[: 6 * plan.sample_rate].astype(np.float32), plan.sample_rate)
    return out


def _file_measures(path) -> tuple[float, float]:
    decoded = decode_audio(path)
    return integrated_loudness(decoded.audio, decoded.sample_rate), true_peak_db(decoded.audio)


def test_the_meter_reads_the_standards_reference_signals():
    sr = 48000
    t = np.arange(5 * sr) / sr
    full_scale = np.sin(2 * np.pi * 997 * t)[None]
    assert integrated_loudness(full_scale, sr) == pytest.approx(-3.01, abs=0.02)  # BS.1770: 0 dBFS sine, one channel
    stereo = np.repeat(10 ** (-23 / 20) * full_scale, 2, axis=0)
    assert integrated_loudness(stereo, sr) == pytest.approx(-23.0, abs=0.05)  # EBU Tech 3341, case 1
    quarter = np.sin(2 * np.pi * sr / 4 * t + np.pi / 4)[None]  # samples at +-0.707: the peak falls between them
    assert 20 * np.log10(np.abs(quarter).max()) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_db(quarter) == pytest.approx(0.0, abs=0.3)
    assert integrated_loudness(np.zeros((1, sr)), sr) is None and integrated_loudness(full_scale[:, :1000], sr) is None


def test_the_limiter_holds_its_ceiling_and_leaves_quiet_audio_alone():
    sr = 32000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4 * sr)) * 0.05
    x[:, sr : sr + 400] *= 40  # a burst far over the ceiling
    limited, depth = limit_true_peak(x, sr, CEILING)
    assert true_peak_db(limited) <= CEILING + 1e-6 and depth > 10
    ratio = limited[:, 3 * sr :] / x[:, 3 * sr :]
    assert np.all(np.abs(20 * np.log10(ratio)) < 0.01)  # released well before the end
    quiet, depth = limit_true_peak(x[:, :sr] * 0.1, sr, CEILING)
    assert depth == 0.0 and np.array_equal(quiet, x[:, :sr] * 0.1)


def test_the_round_trip_is_what_the_muxer_writes(picture, tmp_path, songs):
    music, sr = songs["rock"]
    music = music[None] * 0.5
    result = mux_music(picture, music, sr, tmp_path / "out.mp4")
    written = decode_audio(result.path).audio
    predicted = aac_round_trip(music, sr)[:, : written.shape[1]]
    assert np.abs(written - predicted).max() < 1e-6


@pytest.mark.parametrize("genre,scale", [("electronic", 0.03), ("electronic", 1.0), ("rock", 0.3), ("folk", 1.0),
                                         ("ambient", 0.1)])
def test_music_reaches_the_target_under_the_ceiling_in_the_encoded_file(picture, tmp_path, songs, genre, scale):
    music, sr = songs[genre]
    mastered = master(music[None] * scale, sr, TARGET)
    assert mastered.warning is None
    lufs, peak = _file_measures(mux_music(picture, mastered.audio, sr, tmp_path / "out.mp4").path)
    assert abs(lufs - TARGET) <= 0.5 and peak <= CEILING
    assert (lufs, peak) == pytest.approx((mastered.lufs, mastered.true_peak_dbtp), abs=0.01)  # as it predicted


def test_a_near_dc_signal_is_levelled_by_what_can_be_heard(picture, tmp_path):
    """Mostly offset and drift (which take the peaks and give no loudness) over a faint tone and noise:
    levelling by sample peak left such output at -21.8 LUFS."""
    sr = 32000
    t = np.arange(6 * sr) / sr
    rng = np.random.default_rng(1)
    x = 0.55 + 0.1 * np.sin(2 * np.pi * 0.5 * t) + 0.01 * np.sin(2 * np.pi * 330 * t) + 0.003 * rng.standard_normal(t.size)
    mastered = master(x[None].astype(np.float32), sr, TARGET)
    lufs, peak = _file_measures(mux_music(picture, mastered.audio, sr, tmp_path / "out.mp4").path)
    assert mastered.warning is None and abs(lufs - TARGET) <= 0.5 and peak <= CEILING
    assert abs(float(mastered.audio.mean())) < 1e-3  # the offset is gone


def test_very_dynamic_music_stays_under_the_ceiling_and_says_what_it_reached(picture, tmp_path):
    """Near silence with two loud hits: -14 LUFS would take the hits 20 dB over the ceiling."""
    sr = 32000
    rng = np.random.default_rng(2)
    x = 0.002 * rng.standard_normal(6 * sr)
    for start in (2.0, 4.0):
        i, n = int(start * sr), int(0.2 * sr)
        x[i : i + n] += 0.95 * np.exp(-np.arange(n) / (0.02 * sr)) * np.sin(2 * np.pi * 80 * np.arange(n) / sr)
    mastered = master(x[None], sr, TARGET)
    lufs, peak = _file_measures(mux_music(picture, mastered.audio, sr, tmp_path / "out.mp4").path)
    assert peak <= CEILING and lufs < TARGET - 0.5
    assert mastered.warning is not None and f"{mastered.lufs:.1f} LUFS" in mastered.warning
    assert f"{mastered.true_peak_dbtp:.1f} dBTP" in mastered.warning and lufs == pytest.approx(mastered.lufs, abs=0.01)


@pytest.mark.slow
def test_generate_records_what_the_output_file_measures(repo, tmp_path):
    """End to end with a tiny untrained model, the original sound of a video with a damaged AAC packet
    ducked under the music: the sidecar's loudness and true peak are the file's own."""
    import av

    from vmas.codec import build_encodec, encodec_xp_config, load_codec, save_codec
    from vmas.generation.generate import GenerationSettings, generate
    from vmas.io import file_sha256
    from vmas.models.builders import build_vmas
    from vmas.models.package import load_model_package, save_model
    from vmas.models.sample import SamplingSettings

    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["model.music_decoder.num_layers=1"])
    xp = encodec_xp_config(n_filters=4, dimension=cfg.codec.dimension, lstm=0)
    torch.manual_seed(0)
    codec = build_encodec(xp).train()
    codec(torch.randn(4, 1, 32000) * 0.1)
    save_codec(codec.eval(), xp, tmp_path / "codec.bin")
    model = build_vmas(cfg, load_codec(tmp_path / "codec.bin").codebook_embeddings(), load_pretrained=False)
    save_model(model, cfg, tmp_path / "codec.bin", file_sha256(tmp_path / "codec.bin"), tmp_path / "model.pt")
    source = tmp_path / "damaged.mp4"
    t = np.arange(3 * 32000) / 32000
    write_mp4(source, [np.full((32, 32, 3), 8 * i, np.uint8) for i in range(30)], 10,
              audio=(0.3 * np.sin(2 * np.pi * 440 * t))[None], sample_rate=32000)
    with av.open(str(source)) as c:
        offset, size = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size][40]
    data = bytearray(source.read_bytes())
    data[offset : offset + size] = bytes([0xFF]) * size  # one AAC packet overwritten on disk
    source.write_bytes(bytes(data))
    settings = GenerationSettings(sampling=SamplingSettings(guidance=2.0, top_k=50), original_audio="duck")
    [result] = generate(load_model_package(tmp_path / "model.pt"), [source], tmp_path / "out", settings, progress=False)
    sidecar = json.loads((tmp_path / "out" / "damaged.json").read_text())
    lufs, peak = _file_measures(result["video"])
    assert sidecar["loudness_reached_lufs"] == pytest.approx(lufs, abs=0.01)
    assert sidecar["true_peak_dbtp"] == pytest.approx(peak, abs=0.01) and peak <= CEILING
    assert sidecar["loudness_warning"] is None and abs(lufs - TARGET) <= 0.5
