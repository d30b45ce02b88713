"""A singing-like vocal line: sung vowels with vibrato and glides, in phrases over the chords.

The source is a harmonic series (a glottal buzz) shaped by the formants of a vowel, so it has what
makes a voice a voice to a separator: a gliding, vibrato-modulated pitch and vowel resonances in the
1-3 kHz band, unlike any instrument in :mod:`vmas.synth.music`.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from vmas.synth.music import Score, midi_to_hz, scale_note
from vmas.synth.plan import ItemPlan

# (F1, F2, F3) in Hz and their bandwidths, roughly a soprano's vowels.
VOWELS = {
    "a": (850, 1220, 2810),
    "e": (560, 2320, 2950),
    "i": (310, 2790, 3310),
    "o": (590, 920, 2710),
    "u": (470, 1160, 2680),
}
BANDWIDTHS = (90.0, 120.0, 180.0)
FORMANT_GAINS = (1.0, 0.6, 0.3)
MAX_HARMONIC_HZ = 5000.0


def compose_vocal_line(plan: ItemPlan, score: Score) -> list[tuple[float, float, int, str]]:
    """Notes ``(start_s, length_s, midi, vowel)``: two-bar phrases separated by one or two bars of rest."""
    rng = plan.rng("vocals")
    beat = score.beat_s
    notes = []
    bar = int(rng.integers(0, 2))
    while bar < len(score.downbeats):
        t = score.downbeats[bar]
        end = min(t + 8 * beat, plan.duration_s - 0.3)
        while t + 0.5 * beat <= end:
            length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])) * beat
            length = min(length, end - t)
            chord = score.chords[min(int((t - score.downbeats[0]) // (4 * beat)), len(score.chords) - 1)]
            if rng.random() < 0.6:
                midi = chord[int(rng.integers(3))] + 12
            else:
                midi = scale_note(plan.root_midi + 24, score.scale, int(rng.integers(0, 8)))
            notes.append((float(t), length * 0.92, int(midi), str(rng.choice(list(VOWELS)))))
            t += length
        bar += 2 + int(rng.integers(1, 3))
    return notes


def render_vocals(plan: ItemPlan, notes: list[tuple[float, float, int, str]]) -> np.ndarray:
    """The vocal stem ``[n_samples]`` at ``plan.sample_rate`` (unscaled; silence between phrases)."""
    sr = plan.sample_rate
    n = int(round(plan.duration_s * sr))
    out = np.zeros(n)
    if not notes:
        return out
    rng = plan.rng("vocal-noise")
    # Pitch contour: each note's target pitch, smoothed by a one-pole glide (~40 ms).
    target = np.full(n, float(notes[0][2]))
    note_of = np.full(n, -1)
    since = np.zeros(n)
    envelope = np.zeros(n)
    for i, (start, length, midi, _) in enumerate(notes):
        a, b = int(start * sr), min(int((start + length) * sr), n)
        target[a:] = midi
        note_of[a:b] = i
        local = np.arange(b - a) / sr
        since[a:b] = local
        envelope[a:b] = np.minimum(local / 0.04, 1.0) * np.clip((length - local) / 0.08, 0.0, 1.0)
    pole = np.exp(-1.0 / (0.04 * sr))
    pitch = lfilter([1 - pole], [1, -pole], target - target[0]) + target[0]
    vibrato = 0.3 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr) * np.clip((since - 0.15) / 0.2, 0.0, 1.0)
    f0 = midi_to_hz(pitch + vibrato)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = np.flatnonzero(note_of >= 0)
    which = note_of[voiced]
    note_f0 = midi_to_hz(np.array([m for _, _, m, _ in notes], dtype=float))
    formants = np.array([VOWELS[v] for *_, v in notes], dtype=float)  # [n_notes, 3]
    for k in range(1, int(MAX_HARMONIC_HZ // note_f0.min()) + 1):
        freq = k * note_f0[:, None]  # [n_notes, 1]
        resonance = (np.array(FORMANT_GAINS) / (1 + ((freq - formants) / np.array(BANDWIDTHS)) ** 2)).sum(1)
        gain = (resonance + 0.02) * k**-0.7 * (k * note_f0 < MAX_HARMONIC_HZ)  # [n_notes]
        out[voiced] += gain[which] * np.sin(k * phase[voiced])
    out += np.diff(rng.standard_normal(n + 1)) * 0.01  # breath
    return out * envelope
