import numpy as np
import pytest

from vmas.config import load_config
from vmas.synth import plan_item
from vmas.synth.music import PERCUSSIVE, compose, render_music
from vmas.synth.vocals import compose_vocal_line, render_vocals


@pytest.fixture(scope="module")
def plans(repo):
    cfg = load_config(repo / "configs" / "demo.yaml", overrides=["synth.max_duration_s=10"]).synth
    return [plan_item(cfg, i) for i in range(8)]


def test_every_beat_is_an_onset_and_onsets_are_at_most_eighths(plans):
    for plan in plans:
        score = compose(plan)
        onsets = score.onset_times()
        assert len(score.beats) >= 6
        nearest = np.min(np.abs(score.beats[:, None] - onsets[None, :]), axis=1)
        assert np.all(nearest < 1e-6), plan.genre
        assert np.min(np.diff(onsets)) >= score.beat_s / 2 - 1e-6, plan.genre
        assert np.allclose(np.diff(score.beats), 60 / plan.tempo_bpm)
        assert all(e.kind in PERCUSSIVE or e.kind == "pad" for e in score.events)


def test_music_is_deterministic_and_has_energy_at_the_beats(plans):
    plan = plans[1]
    score = compose(plan)
    a, b = render_music(plan, score), render_music(plan, compose(plan))
    assert np.array_equal(a, b)
    assert a.shape == (int(round(plan.duration_s * plan.sample_rate)),)
    sr, hop = plan.sample_rate, plan.sample_rate // 100
    energy = np.sqrt(np.convolve(a**2, np.ones(hop) / hop, mode="same"))
    flux = np.maximum(np.diff(energy), 0)
    at_beats = [flux[int(t * sr) : int(t * sr) + hop].max() for t in score.beats]
    between = [flux[int((t + score.beat_s * 0.25) * sr) : int((t + score.beat_s * 0.25) * sr) + hop].max()
               for t in score.beats[:-1]]
    assert np.median(at_beats) > 3 * np.median(between)


def test_vocal_line_sits_in_phrases_with_a_voice_like_spectrum(plans):
    plan = next(p for p in plans if p.tempo_bpm < 140)
    score = compose(plan)
    notes = compose_vocal_line(plan, score)
    assert notes and all(0 <= s < plan.duration_s and length > 0 for s, length, _, _ in notes)
    voice = render_vocals(plan, notes)
    assert voice.shape == (int(round(plan.duration_s * plan.sample_rate)),)
    voiced = np.abs(voice) > 1e-4
    assert 0.2 < voiced.mean() < 0.95  # phrases and rests
    spectrum = np.abs(np.fft.rfft(voice))
    freqs = np.fft.rfftfreq(voice.size, 1 / plan.sample_rate)
    formant_band = spectrum[(freqs > 250) & (freqs < 3500)].sum()
    assert formant_band / spectrum.sum() > 0.8
    assert not np.any(render_vocals(plan, []))
