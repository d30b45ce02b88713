"""Metric maths on constructed cases."""

import numpy as np
import pytest

from vmas.evaluation.metrics import (audio_peaks, fad, frechet_distance, kl_divergence, mv_align, mv_align_chance,
                                     retrieval_recall, video_peaks)


def test_mv_align_constructed_cases():
    peaks = np.array([0.5, 1.0, 1.5, 2.0])
    assert mv_align(peaks, peaks, fps=25) == 1.0
    assert mv_align(peaks, peaks + 0.3, fps=25) == 0.0  # disjoint
    assert mv_align(peaks, peaks + 0.03, fps=25) == 1.0  # within one frame (40 ms)
    assert mv_align(peaks, peaks + 0.05, fps=25) == 0.0  # just past it
    assert mv_align(peaks, peaks[:2], fps=25) == pytest.approx(2 / 4)
    assert mv_align([], [], fps=25) == 1.0 and mv_align(peaks, [], fps=25) == 0.0


def test_mv_align_matches_one_to_one():
    """One audio onset with three video peaks around it is one match, not three."""
    assert mv_align([1.0], [0.98, 1.0, 1.02], fps=25) == pytest.approx(1 / (1 + 3 - 1))


def test_mv_align_chance_scores_music_against_the_other_videos():
    beats = [np.array([0.5, 1.5, 2.5]), np.array([0.9, 1.9, 2.9]), np.array([0.2, 1.2, 2.2])]
    # music that follows its own video perfectly: 1.0 on its own, 0.0 against videos with other phases
    assert [mv_align(b, b, 25) for b in beats] == [1.0, 1.0, 1.0]
    assert mv_align_chance(beats, beats, [25.0] * 3) == 0.0
    # clips of one source video are not each other's chance pairs
    assert mv_align_chance(beats, [beats[0], beats[0], beats[2]], [25.0] * 3, groups=["a", "a", "b"]) == \
        pytest.approx(np.mean([0.0, 0.0, 0.0, 0.0]))
    assert mv_align_chance(beats[:2], beats[:2], [25.0] * 2, groups=["a", "a"]) is None
    same = [np.array([1.0, 2.0])] * 2  # the same beat times in two videos: chance is high, as it should be
    assert mv_align_chance(same, same, [25.0, 25.0]) == 1.0


def test_fad_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 8))
    assert fad(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_fad_of_samples_approaches_the_true_distance():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (20000, 2))
    b = rng.normal(0.5, 2.0, (20000, 2))
    expected = 2 * 0.5**2 + 2 * (1 + 4 - 2 * 2)
    assert fad(a, b) == pytest.approx(expected, rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        fad(a[:1], b)


def test_video_peaks_are_thresholded_local_maxima():
    fps = 10.0
    motion = np.array([0.2, 1.0, 0.2, 0.2, 5.0, 0.2, 0.3, 0.2, 4.0, 4.0, 0.2])
    # median 0.2, top 5: 1.0 rises 17 % of the way, 0.3 only 2 %; the 4.0 plateau counts once, at its first frame
    assert video_peaks(motion, fps, threshold=0.1).tolist() == pytest.approx([0.2, 0.5, 0.9])
    assert video_peaks(motion, fps, threshold=0.5).tolist() == pytest.approx([0.5, 0.9])
    assert video_peaks(motion + 10.0, fps, threshold=0.1).tolist() == pytest.approx([0.2, 0.5, 0.9])  # offset-free
    assert video_peaks(np.zeros(8), fps).size == 0 and video_peaks(np.array([]), fps).size == 0
    assert video_peaks(np.full(8, 2.0), fps).size == 0  # steady motion has no peak


def _hits(times, seconds, sr=16000):
    """Percussive hits (noise bursts decaying in ~4 ms) at ``times``; silence elsewhere."""
    rng = np.random.default_rng(0)
    audio = np.zeros(int(seconds * sr), np.float32)
    for t in times:
        i = int(round(t * sr))
        audio[i : i + 4000] += (np.exp(-np.arange(4000) / 64) * rng.standard_normal(4000)).astype(np.float32)
    return audio


def test_audio_peaks_find_hits():
    onsets = audio_peaks(_hits([0.8, 1.6, 3.2], 4.0), 16000)
    assert len(onsets) == 3 and np.allclose(onsets, [0.8, 1.6, 3.2], atol=0.04)


def test_mv_align_end_to_end_on_synchronised_events():
    """Hits on the frames where the motion spikes align fully; hits 0.3 s later do not."""
    fps = 25.0
    motion = np.full(100, 0.1)
    motion[[19, 39, 79]] = 3.0  # dated at frames 20, 40, 80 -> 0.8 s, 1.6 s, 3.2 s
    v = video_peaks(motion, fps)
    assert v.tolist() == pytest.approx([0.8, 1.6, 3.2])
    assert mv_align(audio_peaks(_hits(v, 4.0), 16000), v, fps) == 1.0
    assert mv_align(audio_peaks(_hits(v + 0.3, 4.0), 16000), v, fps) == 0.0


def test_kl_divergence():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    q = np.array([[0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])
    expected = (np.sum(p[0] * np.log(p[0] / q[0])) + 0.0) / 2
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-5)
    assert kl_divergence(2 * p, p) == pytest.approx(0.0, abs=1e-12)  # scores are normalised per clip
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(p, q[:1])


def test_retrieval_recall():
    rng = np.random.default_rng(0)
    video = rng.standard_normal((20, 8))
    assert retrieval_recall(video, video, (1, 10)) == {1: 1.0, 10: 1.0}
    shuffled = video[np.roll(np.arange(20), 1)]  # every video's own music is some other clip's
    r = retrieval_recall(video, shuffled, (1, 20))
    assert r[1] < 0.2 and r[20] == 1.0
    tied = np.ones((4, 3))
    assert retrieval_recall(tied, tied, (1, 4)) == {1: 0.0, 4: 1.0}  # ties earn no credit
