"""K*'s interval checked where the answer is known: synthetic studies, and the study's own tokens with a planted
bend."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scaling.analyses.k_star import HALF_OCTAVES, k_star, simulate_truncation
from pipeline.scaling.analyses.k_star_coverage import k_star_coverage, k_star_coverage_on_data, planted_curve


def test_coverage_of_the_interval_on_synthetic_studies() -> None:
    """A bend planted at K = 45 on a design like the study's (fewer positions): the test finds it and the interval
    holds it in nearly every simulated study; planting a K that was never scored is refused by name."""
    cover = k_star_coverage(45, 12, 36, HALF_OCTAVES, n_positions=64, gain=0.1, n_sims=40, n_boot=199)
    assert cover.detected >= 0.9 and cover.covered >= 0.85, cover.describe()
    assert cover.covered <= cover.detected and "planted K* = 45" in cover.describe()
    assert "12 clusters, 36 sequences, 64 positions, 13 contexts" in cover.describe()
    weak = k_star_coverage(45, 12, 36, HALF_OCTAVES, n_positions=64, gain=0.002, n_sims=40, n_boot=199)
    assert (
        weak.detected < cover.detected
    )  # a bend too small for the noise is mostly missed, and counts as a miss
    still = k_star_coverage(45, 12, 36, HALF_OCTAVES, n_positions=64, gain=0.1, gain_after=0.01, n_sims=10)
    assert still.detected >= 0.8 and "-0.01 after" in still.describe()  # a model that still gains a little
    with pytest.raises(ValueError, match="planted K\\* 50 is not one of the contexts"):
        k_star_coverage(50, 12, 36)
    with pytest.raises(ValueError, match="gain must be > 0"):
        k_star_coverage(45, 12, 36, gain=0.0)
    with pytest.raises(ValueError, match="and > gain_after"):
        k_star_coverage(45, 12, 36, gain=0.05, gain_after=0.05)


def test_planted_curve_bends_at_the_planted_context() -> None:
    curve = planted_curve(HALF_OCTAVES, 45, 0.1, 0.01)
    slopes = np.diff(curve) / np.diff(np.log(HALF_OCTAVES))
    at = HALF_OCTAVES.index(45)
    np.testing.assert_allclose(slopes[:at], -0.1)  # gain: the slope before K*
    np.testing.assert_allclose(slopes[at:], -0.01)
    assert curve[-1] == 0.0


def test_coverage_on_data_replaces_the_datas_own_bend_with_the_planted_one() -> None:
    """Data whose L(K) bends at 32: planting a bend at 91 in its tokens, the test finds 91 (the data's own bend is
    gone), and its interval holds 91; the data's noise (cluster spread, correlation across K) is kept."""
    loss, ids = simulate_truncation(np.random.default_rng(3), 12, 36, HALF_OCTAVES, 64, 0.1, 32)
    books = np.array([f"book{i}" for i in ids])
    assert k_star(loss, HALF_OCTAVES, books, "book", n_boot=199).k_star in (23, 32, 45)  # the data's own bend
    cover = k_star_coverage_on_data(loss, HALF_OCTAVES, books, 91, gain=0.1, n_sims=30, n_boot=199)
    assert cover.detected >= 0.9 and cover.covered >= 0.85, cover.describe()
    assert cover.design["n_clusters"] == 12 and "the study's own tokens as noise" in cover.describe()
    flat = k_star_coverage_on_data(loss, HALF_OCTAVES, books, 91, gain=1e-4, n_sims=20, n_boot=199)
    assert flat.detected <= 0.2  # nothing planted to find: the data's own bend does not leak through
