"""Codec quality metrics against signals whose answer is known."""

import numpy as np
import pytest
import torch

from vmas.codec.quality import match_events, mel_distance, onset_f_measure, si_snr

SR = 32000


def _clicks(times, seconds=3.0, sr=SR):
    """Decaying 1 kHz bursts at ``times`` over a quiet tone: clear onsets."""
    t = np.arange(int(seconds * sr)) / sr
    y = 0.01 * np.sin(2 * np.pi * 220 * t)
    for start in times:
        n = np.arange(int(0.15 * sr))
        i = int(start * sr)
        y[i : i + len(n)] += (0.8 * np.exp(-n / (0.02 * sr)) * np.sin(2 * np.pi * 1000 * n / sr))[: len(y) - i]
    return y.astype(np.float32)


def test_si_snr_known_noise_level_and_gain_invariance():
    torch.manual_seed(0)
    ref = torch.randn(4, SR)
    noise = torch.randn(4, SR)
    noise = noise / noise.norm(dim=-1, keepdim=True) * ref.norm(dim=-1, keepdim=True) * 10 ** (-10 / 20)
    got = si_snr(ref + noise, ref)
    assert got.shape == (4,)
    assert torch.allclose(got, torch.full((4,), 10.0), atol=0.6)  # noise 10 dB below the signal
    assert torch.allclose(si_snr(3.0 * (ref + noise), ref), got, atol=1e-4)  # gain costs nothing
    assert float(si_snr(ref, ref).min()) > 60


def test_mel_distance_zero_for_identical_and_grows_with_damage():
    x = torch.from_numpy(_clicks([0.5, 1.5]))
    assert float(mel_distance(x, x, SR)) == pytest.approx(0.0, abs=1e-5)
    lowpassed = torch.from_numpy(np.convolve(x.numpy(), np.ones(32) / 32, mode="same").astype(np.float32))
    noisy = x + 0.05 * torch.randn_like(x)
    assert 0 < float(mel_distance(lowpassed, x, SR)) and 0 < float(mel_distance(noisy, x, SR))


def test_match_events_is_one_to_one_within_tolerance():
    ref = np.array([0.5, 1.0, 1.5])
    assert match_events(ref, np.array([0.51, 1.04, 2.0]), 0.05) == 2
    assert match_events(ref, np.array([0.5, 0.5, 0.5]), 0.05) == 1  # one estimate per reference
    assert match_events(ref, np.array([]), 0.05) == 0


def test_onset_f_measure_keeps_or_loses_onsets():
    times = [0.3, 0.9, 1.5, 2.1]
    ref = _clicks(times)
    assert onset_f_measure(ref, ref, SR) == 1.0
    assert onset_f_measure(ref, _clicks([t + 0.25 for t in times]), SR) < 0.3  # every onset moved
    assert onset_f_measure(ref, _clicks(times[:2]), SR) == pytest.approx(2 * 2 / (4 + 2), abs=0.01)


def test_the_training_si_snr_gains_nothing_by_shrinking_the_output():
    """The plain formula's eps lets a near-silent output beat a wrong-phase one; the training term does not."""
    import torch

    from vmas.codec.training import unit_si_snr

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 16000, generator=g)
    noisy = x + 0.3 * torch.randn(x.shape, generator=g)
    assert torch.allclose(unit_si_snr(noisy, x), si_snr(noisy, x), atol=1e-3)
    wrong = torch.randn(x.shape, generator=g)  # right level, no relation to x: about -40 dB
    assert (si_snr(wrong * 1e-7, x) > si_snr(wrong, x) + 20).all()  # the loophole
    assert torch.allclose(unit_si_snr(wrong * 1e-7, x), unit_si_snr(wrong, x), atol=0.01)
