"""Metrics of generated music, each a plain function over arrays (issue 6 builds the rest on them).

- :func:`mv_align`: beat alignment between music onsets and video motion peaks (AV-Align, Yariv et
  al., AAAI 2024), with one-to-one matching.
- :func:`frechet_distance` / :func:`fad`: Frechet distance between Gaussian fits of embeddings.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from vmas.codec.quality import match_events


def mv_align(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float) -> float:
    """AV-Align / MV-Align: ``matched / (|A| + |V| - matched)`` (intersection over union of peaks).

    A video peak matches an audio peak when they are at most one video frame (``1 / fps`` s)
    apart; each peak matches at most once (public implementations let one audio peak match many
    video peaks, which inflates the score). Both empty: 1.0; one empty: 0.0.
    """
    audio, video = np.sort(np.asarray(audio_peaks, float)), np.sort(np.asarray(video_peaks, float))
    if len(audio) == 0 and len(video) == 0:
        return 1.0
    matched = match_events(audio, video, 1.0 / fps + 1e-9)
    return matched / (len(audio) + len(video) - matched)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians."""
    diff = np.asarray(mu1, float) - np.asarray(mu2, float)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as the FID/FAD references do
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fad(generated: np.ndarray, reference: np.ndarray) -> float:
    """Frechet distance of two embedding sets ``[N, D]`` and ``[M, D]`` (Gaussian fits)."""
    g, r = np.asarray(generated, float), np.asarray(reference, float)
    if len(g) < 2 or len(r) < 2:
        raise ValueError(f"FAD needs at least 2 embeddings per set, got {len(g)} and {len(r)}")
    return frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
