"""Figures a person would rather see than read: training curves, spectrograms with onsets, beat alignment.

Every function writes one PNG atomically (matplotlib's Agg backend, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vmas.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def training_curves(history: Sequence[dict], keys: Sequence[str], path: str | Path, title: str = "",
                    smooth: int = 10) -> Path:
    """One panel per key of ``history`` rows (``{"step": int, key: float}``): raw values and a running mean."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    steps = np.array([h["step"] for h in history])
    for ax, key in zip(axes[0], keys):
        values = np.array([h[key] for h in history], dtype=float)
        ax.plot(steps, values, color="0.75", lw=0.8)
        if len(values) >= smooth:
            ax.plot(steps[smooth - 1:], np.convolve(values, np.ones(smooth) / smooth, mode="valid"), lw=1.6)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, y=1.04)
    return _save(fig, path)


def spectrogram_pair(original: np.ndarray, decoded: np.ndarray, sample_rate: int, path: str | Path,
                     onsets: tuple[np.ndarray, np.ndarray] | None = None, title: str = "",
                     labels: tuple[str, str] = ("original", "decoded")) -> Path:
    """Log-mel spectrograms of two signals (an original and its reconstruction, or reference and
    generated music), one above the other, onsets marked."""
    import librosa

    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for i, (ax, audio, name) in enumerate(zip(axes, (original, decoded), labels)):
        mel = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=sample_rate, n_mels=80)
        db = librosa.power_to_db(mel, ref=np.max, top_db=80)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(audio) / sample_rate, 0, db.shape[0]))
        if onsets is not None:
            for t in onsets[i]:
                ax.axvline(t, color="cyan", lw=0.8, alpha=0.8)
        ax.set_ylabel(f"{name}\nmel bin")
    axes[-1].set_xlabel("seconds" + ("  (lines: onsets)" if onsets is not None else ""))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def beat_alignment(motion: np.ndarray, fps: float, video_peaks: np.ndarray, onsets: dict[str, np.ndarray],
                   path: str | Path, title: str = "") -> Path:
    """The video's motion curve with its peaks, and each music's onsets as a row of ticks beneath.

    ``motion[i]`` (flow between frames ``i`` and ``i + 1``) is drawn at ``(i + 1) / fps``; a tick
    that sits under a peak (within one frame) is an aligned beat.
    """
    plt = _pyplot()
    fig, (ax, ticks) = plt.subplots(2, 1, figsize=(9, 3.8), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    t = (np.arange(len(motion)) + 1) / fps
    ax.plot(t, motion, lw=1.0, color="0.3")
    for p in video_peaks:
        ax.axvline(p, color="tab:red", lw=0.8, alpha=0.6)
    ax.set_ylabel("mean flow (px)")
    ax.set_title("video motion (red: motion peaks)", fontsize=9)
    for row, (name, times) in enumerate(onsets.items()):
        ticks.vlines(times, row - 0.4, row + 0.4, color=f"C{row}", lw=1.2)
    for p in video_peaks:
        ticks.axvline(p, color="tab:red", lw=0.8, alpha=0.3)
    ticks.set_yticks(range(len(onsets)), list(onsets))
    ticks.set_ylim(-0.6, len(onsets) - 0.4)
    ticks.set_xlabel("seconds (ticks: music onsets)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
