"""Instrumental music for a synthetic item: a score of timed events, then a mono waveform.

Every genre strikes something on every beat (a kick, a bass note, a pluck or a bell), and those
beat onsets are where the picture moves (see :mod:`vmas.synth.video`). Onsets come at most every
eighth note, so a motion peak a quarter beat off an onset can be told from one that lands on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmas.synth.plan import STYLES, ItemPlan

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PERCUSSIVE = {"kick", "snare", "hat", "bass", "arp", "power", "pluck", "bell"}  # everything but "pad"
LEVELS = {"kick": 0.9, "snare": 0.45, "hat": 0.12, "bass": 0.45, "arp": 0.22, "power": 0.18, "pluck": 0.35,
          "bell": 0.35, "pad": 0.06}


@dataclass(frozen=True)
class Event:
    time: float  # seconds
    kind: str  # instrument, a key of LEVELS
    midi: float  # pitch (ignored by drums)
    velocity: float  # 0..1
    length: float  # seconds the note is held (pads), or the instrument's natural decay


@dataclass(frozen=True)
class Score:
    beat_s: float
    beats: np.ndarray  # [n_beats] seconds
    downbeats: np.ndarray  # [n_bars] seconds
    events: tuple[Event, ...]
    chords: tuple[tuple[int, ...], ...]  # per bar, midi notes of the triad (chord register)
    scale: tuple[int, ...]

    def onset_times(self, merge_s: float = 0.02) -> np.ndarray:
        """Times where a struck (non-pad) note starts, merged when closer than ``merge_s``."""
        times = np.array(sorted({round(e.time, 6) for e in self.events if e.kind in PERCUSSIVE}))
        if times.size == 0:
            return times
        keep = np.concatenate([[True], np.diff(times) > merge_s])
        return times[keep]


def midi_to_hz(m: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m) - 69.0) / 12.0)


def scale_note(root: int, scale: tuple[int, ...], degree: int) -> int:
    """MIDI note of a (possibly negative or > 7) scale degree above ``root``."""
    octave, step = divmod(degree, len(scale))
    return root + 12 * octave + scale[step]


def compose(plan: ItemPlan) -> Score:
    style = STYLES[plan.genre]
    rng = plan.rng("compose")
    scale = SCALES[plan.mode]
    beat = 60.0 / plan.tempo_bpm
    start = float(rng.uniform(0.25, 0.5))  # leave room before the first onset for onset detectors
    beats = np.arange(start, plan.duration_s - 0.15, beat)
    downbeats = beats[::4]
    n_bars = len(downbeats)
    chords = []
    for bar in range(n_bars):
        degree = plan.progression[bar % len(plan.progression)]
        chords.append(tuple(scale_note(plan.root_midi + 12, scale, degree + step) for step in (0, 2, 4)))
    events: list[Event] = []
    add = events.append
    for i, t in enumerate(beats):
        bar, pos = divmod(i, 4)
        chord = chords[bar]
        half = t + beat / 2
        in_time = half < plan.duration_s - 0.1
        if style.drums == "four_on_floor":
            add(Event(t, "kick", 0, 1.0, 0.3))
            if pos in (1, 3):
                add(Event(t, "snare", 0, 0.8, 0.25))
            if in_time:
                add(Event(half, "hat", 0, 0.7, 0.06))
        elif style.drums == "backbeat":
            add(Event(t, "kick" if pos in (0, 2) else "snare", 0, 1.0, 0.3))
            add(Event(t, "hat", 0, 0.8, 0.06))
            if in_time:
                add(Event(half, "hat", 0, 0.5, 0.06))
        if style.bass:
            add(Event(t, "bass", chord[0] - 12, 1.0 if pos == 0 else 0.85, min(0.9 * beat, 0.5)))
        if style.lead == "arp":
            add(Event(t, "arp", chord[pos % 3] + 12, 1.0, 0.25))
            if in_time:
                add(Event(half, "arp", chord[(pos + 1) % 3] + 24, 0.6, 0.2))
        elif style.lead == "power_chords":
            add(Event(t, "power", chord[0], 1.0, 0.8 * beat))
            if in_time:
                add(Event(half, "power", chord[0], 0.55, 0.4 * beat))
        elif style.lead == "pluck":
            add(Event(t, "pluck", chord[pos % 3] + 12, 1.0, 0.8))
            if in_time:
                add(Event(half, "pluck", chord[(pos + 2) % 3] + 12, 0.5, 0.6))
        elif style.lead == "bell":
            add(Event(t, "bell", chord[int(rng.integers(3))] + 12, 1.0, 1.6))
            if in_time and rng.random() < 0.3:
                add(Event(half, "bell", chord[int(rng.integers(3))] + 24, 0.4, 1.2))
        if style.pad and pos == 0:
            add(Event(t, "pad", 0, 1.0, 4 * beat))  # the pad reads its notes from the bar's chord
    return Score(beat, beats, downbeats, tuple(events), tuple(chords), scale)


# --------------------------------------------------------------------------- rendering


def _time(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(seconds * sr)) / sr


def _additive(f0: float, seconds: float, sr: int, harmonics: int, tau: float, harm_decay: float,
              rolloff: float = 1.0, attack: float = 0.003) -> np.ndarray:
    """Sum of harmonics, each decaying faster the higher it is: a plucked or struck string."""
    t = _time(sr, seconds)
    out = np.zeros_like(t)
    for k in range(1, harmonics + 1):
        if k * f0 >= 0.45 * sr:
            break
        out += np.sin(2 * np.pi * k * f0 * t) * np.exp(-t * (1 + harm_decay * (k - 1)) / tau) / k**rolloff
    return out * np.minimum(t / attack, 1.0)


def _drum_kit(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sample per drum, reused for every hit (a drum machine)."""
    t = _time(sr, 0.3)
    freq = 45 + 110 * np.exp(-t / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.14)
    kick[: int(0.004 * sr)] += rng.standard_normal(int(0.004 * sr)) * 0.3
    t = _time(sr, 0.25)
    noise = np.diff(rng.standard_normal(len(t) + 1))
    snare = 0.6 * noise * np.exp(-t / 0.07) + 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
    t = _time(sr, 0.06)
    hat = np.diff(rng.standard_normal(len(t) + 2), n=2) * np.exp(-t / 0.015) * 0.5
    return {"kick": kick, "snare": snare, "hat": hat}


def _note(event: Event, sr: int, chord: tuple[int, ...]) -> np.ndarray:
    f0 = float(midi_to_hz(event.midi))
    if event.kind == "bass":
        return _additive(f0, event.length, sr, harmonics=6, tau=0.35, harm_decay=0.8, rolloff=1.3)
    if event.kind == "arp":
        return _additive(f0, event.length, sr, harmonics=10, tau=0.16, harm_decay=0.3)
    if event.kind == "pluck":
        return _additive(f0, event.length, sr, harmonics=8, tau=0.45, harm_decay=0.5, rolloff=1.2)
    if event.kind == "power":
        y = sum(_additive(float(midi_to_hz(event.midi + d)), event.length, sr, 12, 0.25, 0.15, 0.9) for d in (0, 7, 12))
        return np.tanh(2.5 * y) * np.exp(-_time(sr, event.length) / 0.3)
    if event.kind == "bell":
        t = _time(sr, event.length)
        index = 2.0 * np.exp(-t / 0.5)
        y = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * 3.5 * f0 * t)) * np.exp(-t / 0.9)
        return y * np.minimum(t / 0.002, 1.0)
    if event.kind == "pad":
        t = _time(sr, event.length + 0.4)
        y = sum(np.sin(2 * np.pi * float(midi_to_hz(m)) * (1 + d) * t) for m in chord for d in (-0.003, 0.0, 0.003))
        envelope = np.minimum(t / 0.5, 1.0) * np.clip((event.length + 0.4 - t) / 0.4, 0.0, 1.0)
        return y * envelope / 9
    raise ValueError(f"unknown instrument {event.kind!r}")


def render_music(plan: ItemPlan, score: Score) -> np.ndarray:
    """The instrumental stem, ``[n_samples]`` float64 at ``plan.sample_rate``, RMS about -20 dBFS."""
    sr = plan.sample_rate
    n = int(round(plan.duration_s * sr))
    out = np.zeros(n)
    kit = _drum_kit(sr, plan.rng("drums"))
    bar_of = np.searchsorted(score.downbeats, [e.time for e in score.events], side="right") - 1
    for event, bar in zip(score.events, bar_of):
        wave = kit[event.kind] if event.kind in kit else _note(event, sr, score.chords[max(bar, 0)])
        start = int(round(event.time * sr))
        segment = out[start : start + len(wave)]  # a view: notes ringing past the end are cut
        segment += LEVELS[event.kind] * event.velocity * wave[: len(segment)]
    fade = min(int(0.05 * sr), n)
    out[n - fade :] *= np.linspace(1.0, 0.0, fade)
    return out * (0.1 / max(float(np.sqrt(np.mean(out**2))), 1e-9))
