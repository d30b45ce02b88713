"""Measure a rendered synthetic set from its files, not from its plan.

Decodes each mp4 (frames with decord, audio with PyAV) and reads the stems, then reports what a
curator would check: is the video static, where does the picture move, where does the music have
onsets, do the two coincide, how loud is the vocal stem, and is the mp4's audio the stems' sum.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import correlate, find_peaks

from vmas.media import read_audio

STATIC_MOTION = 0.5  # mean absolute gray-level change below which two frames count as the same
SILENT_DBFS = -60.0


@dataclass(frozen=True)
class ItemMeasurement:
    item_id: str
    frames: int
    fps: float
    duration_s: float
    moving_frame_share: float  # share of consecutive frame pairs that differ
    motion_peaks: list[float]  # seconds
    audio_onsets: list[float]  # seconds
    vocals_dbfs: float
    instrumental_dbfs: float
    mix_stem_correlation: float  # mp4 audio vs instrumental + vocals

    @property
    def is_static(self) -> bool:
        return self.moving_frame_share < 0.05

    @property
    def has_vocals(self) -> bool:
        return self.vocals_dbfs > SILENT_DBFS


def motion_curve(frames: np.ndarray) -> np.ndarray:
    """Mean absolute gray-level change between consecutive frames: ``[T, H, W, 3] -> [T - 1]``."""
    gray = frames.astype(np.float32).mean(-1)
    return np.abs(np.diff(gray, axis=0)).mean((1, 2))


def motion_peak_times(motion: np.ndarray, fps: float) -> np.ndarray:
    """Local maxima of the motion curve that stand out from its typical level, in seconds.

    ``motion[i]`` is the change from frame ``i`` to ``i + 1``, so a peak is dated at frame ``i + 1``.
    """
    if motion.size < 3:
        return np.zeros(0)
    prominence = max(STATIC_MOTION, 0.5 * float(np.median(motion)))
    peaks, _ = find_peaks(motion, prominence=prominence)
    return (peaks + 1) / fps


def coincidence(events: np.ndarray, references: np.ndarray, tolerance: float) -> float:
    """Share of ``events`` with a reference within ``tolerance`` seconds (NaN when there are no events)."""
    if events.size == 0:
        return float("nan")
    if references.size == 0:
        return 0.0
    return float(np.mean(np.min(np.abs(events[:, None] - references[None, :]), axis=1) <= tolerance))


def _dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 1e-10)))


def measure_item(truth_path: str | Path) -> ItemMeasurement:
    import decord  # heavy; only needed here
    import librosa

    truth_path = Path(truth_path)
    truth = json.loads(truth_path.read_text())
    folder = truth_path.parent
    files = {k: folder / v for k, v in truth["files"].items()}
    reader = decord.VideoReader(str(files["video"]))
    fps = float(reader.get_avg_fps())
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    motion = motion_curve(frames)
    mix, sr = read_audio(files["video"])
    onsets = librosa.onset.onset_detect(y=mix, sr=sr, units="time")
    instrumental, _ = sf.read(files["instrumental"], dtype="float32")
    vocals, _ = sf.read(files["vocals"], dtype="float32")
    return ItemMeasurement(
        item_id=truth["item_id"],
        frames=len(reader),
        fps=fps,
        duration_s=len(reader) / fps,
        moving_frame_share=float(np.mean(motion > STATIC_MOTION)) if motion.size else 0.0,
        motion_peaks=[round(float(t), 4) for t in motion_peak_times(motion, fps)],
        audio_onsets=[round(float(t), 4) for t in onsets],
        vocals_dbfs=_dbfs(vocals),
        instrumental_dbfs=_dbfs(instrumental),
        mix_stem_correlation=_aligned_correlation(mix, instrumental + vocals),
    )


def _aligned_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4096) -> float:
    """Normalised correlation of ``a`` and ``b`` at the best lag up to ``max_lag`` samples (codec delay)."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    full = correlate(a, b, mode="full", method="fft")  # index n - 1 is lag 0
    window = full[n - 1 - max_lag : n + max_lag]
    lag = int(np.argmax(window)) - max_lag
    x, y = (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


@dataclass(frozen=True)
class SetMeasurement:
    items: int
    static_share: float
    vocal_share: float
    onset_coincidence: float  # motion peaks of dynamic videos with an audio onset within tolerance
    shifted_coincidence: float  # the same with peaks moved a quarter beat: what chance alone gives
    tolerance_s: float
    min_mix_stem_correlation: float


def measure_set(folder: str | Path, tolerance_frames: float = 1.0, slack_s: float = 0.02) -> tuple[SetMeasurement, list[dict]]:
    """Measure every item listed in ``folder/synth.json``; returns the summary and per-item rows."""
    folder = Path(folder)
    index = json.loads((folder / "synth.json").read_text())
    rows, hits, shifted, weights = [], [], [], []
    tolerance = 0.0
    for entry in index["items"]:
        truth = json.loads((folder / f"{entry['item_id']}.truth.json").read_text())
        m = measure_item(folder / f"{entry['item_id']}.truth.json")
        tolerance = max(tolerance, tolerance_frames / m.fps + slack_s)
        peaks, onsets = np.array(m.motion_peaks), np.array(m.audio_onsets)
        row = {**asdict(m), "is_static": m.is_static, "measured_vocals": m.has_vocals,
               "planned_visual": entry["visual"], "planned_vocals": entry["has_vocals"]}
        if not m.is_static and peaks.size:
            quarter_beat = 15.0 / truth["tempo_bpm"]
            row["coincidence"] = coincidence(peaks, onsets, tolerance_frames / m.fps + slack_s)
            row["shifted_coincidence"] = coincidence(peaks + quarter_beat, onsets, tolerance_frames / m.fps + slack_s)
            hits.append(row["coincidence"])
            shifted.append(row["shifted_coincidence"])
            weights.append(peaks.size)
        rows.append(row)
    summary = SetMeasurement(
        items=len(rows),
        static_share=float(np.mean([r["is_static"] for r in rows])),
        vocal_share=float(np.mean([r["measured_vocals"] for r in rows])),
        onset_coincidence=float(np.average(hits, weights=weights)) if hits else float("nan"),
        shifted_coincidence=float(np.average(shifted, weights=weights)) if shifted else float("nan"),
        tolerance_s=tolerance,
        min_mix_stem_correlation=float(min(r["mix_stem_correlation"] for r in rows)),
    )
    return summary, rows
