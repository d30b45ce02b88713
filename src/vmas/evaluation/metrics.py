"""Metrics of generated music, each a plain function over arrays.

- :func:`mv_align`: beat alignment between music onsets (:func:`audio_peaks`) and video motion
  peaks (:func:`video_peaks`), AV-Align (Yariv et al., AAAI 2024) with one-to-one matching.
- :func:`frechet_distance` / :func:`fad`: Frechet distance between Gaussian fits of embeddings.
- :func:`kl_divergence`: between a tagger's label distributions on reference and generated audio.
- :func:`retrieval_recall`: video -> music retrieval R@k with the model's own embeddings.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from vmas.codec.quality import match_events


def audio_peaks(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Music peaks as AV-Align defines them: librosa's onsets (default settings), in seconds."""
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(audio, np.float32), sr=sample_rate, units="time")


def video_peaks(motion: np.ndarray, fps: float, threshold: float = 0.1) -> np.ndarray:
    """Video peaks: local maxima of the per-frame mean optical-flow magnitude, in seconds.

    ``motion[i]`` is the flow between frames ``i`` and ``i + 1`` and is dated at frame ``i + 1``. A
    peak is larger than its left neighbour, at least its right one, and rises at least
    ``threshold`` of the way from the clip's median motion to its largest, so the small wiggles of
    steady motion or of a still shot give no peaks. (The public AV-Align code has no threshold and
    counts every wiggle.)
    """
    m = np.asarray(motion, float)
    if m.size == 0 or not np.any(m > 0):
        return np.zeros(0)
    level, top = float(np.median(m)), float(m.max())
    if top <= level:
        return np.zeros(0)
    padded = np.concatenate([[-np.inf], m, [-np.inf]])
    is_peak = (padded[1:-1] > padded[:-2]) & (padded[1:-1] >= padded[2:]) & (m - level >= threshold * (top - level))
    return (np.flatnonzero(is_peak) + 1) / fps


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


def mv_align_chance(audio_peaks: list[np.ndarray], video_peaks: list[np.ndarray], fps: list[float],
                    groups: list[str] | None = None) -> float | None:
    """MV-Align's chance level: each clip's music scored against the *other* clips' videos, averaged.

    ``audio_peaks[i]``, ``video_peaks[i]``, ``fps[i]`` belong to clip ``i``; pairs within one
    ``groups`` value (clips of one source video, which share a tempo) are left out. Music that
    follows its own video scores above this; music that ignores it scores about this. None when
    there is no pair from two groups.
    """
    n = len(audio_peaks)
    groups = groups if groups is not None else [str(i) for i in range(n)]
    scores = [mv_align(audio_peaks[i], video_peaks[j], fps[j]) for i in range(n) for j in range(n)
              if groups[i] != groups[j]]
    return float(np.mean(scores)) if scores else None


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians."""
    diff = np.asarray(mu1, float) - np.asarray(mu2, float)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    with warnings.catch_warnings(record=True) as caught:  # scipy warns when the product is singular
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if caught or not np.isfinite(covmean).all():  # (near-)singular: regularise, as the FID/FAD references do
        offset = np.eye(sigma1.shape[0]) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fad(generated: np.ndarray, reference: np.ndarray) -> float:
    """Frechet distance of two embedding sets ``[N, D]`` and ``[M, D]`` (Gaussian fits)."""
    g, r = np.asarray(generated, float), np.asarray(reference, float)
    if len(g) < 2 or len(r) < 2:
        raise ValueError(f"FAD needs at least 2 embeddings per set, got {len(g)} and {len(r)}")
    return frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))


def kl_divergence(reference: np.ndarray, generated: np.ndarray, eps: float = 1e-6) -> float:
    """Mean over clips of ``KL(reference || generated)`` between label distributions ``[N, C]``.

    Each row is a clip's label scores (e.g. a tagger's probabilities averaged over its windows);
    rows are clipped at ``eps`` and normalised to sum to 1, so multi-label (sigmoid) taggers give
    distributions too. Equal rows give 0; the value grows as generated music is tagged unlike its
    reference.
    """
    p, q = np.atleast_2d(np.asarray(reference, float)), np.atleast_2d(np.asarray(generated, float))
    if p.shape != q.shape:
        raise ValueError(f"KL needs label scores of the same shape, got {p.shape} and {q.shape}")
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def retrieval_recall(video: np.ndarray, music: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict[int, float]:
    """Video -> music retrieval: the share of videos whose own music ranks in the top ``k``.

    ``video`` and ``music`` are ``[N, D]`` embeddings, row ``i`` of each from clip ``i``; similarity
    is cosine. A music that ties with the right one counts as ranked above it (no credit for ties).
    Chance level is ``k / N``.
    """
    v, m = np.asarray(video, float), np.asarray(music, float)
    if v.shape != m.shape or v.ndim != 2 or len(v) == 0:
        raise ValueError(f"retrieval needs paired [N, D] embeddings, got {v.shape} and {m.shape}")
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    sim = v @ m.T
    right = np.diag(sim)
    rank = (sim >= right[:, None]).sum(1) - 1  # others at least as similar as the right music
    return {k: float(np.mean(rank < k)) for k in ks}
