"""Metric maths on constructed cases."""

import numpy as np
import pytest

from vmas.evaluation.metrics import fad, frechet_distance, mv_align


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
