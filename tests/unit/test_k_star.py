"""K* from truncation curves: a planted bend is found; the null false-plateau rate is at level."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scaling.analyses.k_star import HALF_OCTAVES, false_plateau_rate, k_star, simulate_truncation


@pytest.mark.parametrize("planted", [32, 91])
def test_recovers_a_planted_k_star(planted: int) -> None:
    loss, ids = simulate_truncation(np.random.default_rng(planted), 12, 36, HALF_OCTAVES, 64, 0.1, planted)
    books = np.array([f"book{i}" for i in ids])
    got = k_star(loss, HALF_OCTAVES, books, "book", n_boot=499)
    assert got.k_star is not None, got.reason
    assert abs(HALF_OCTAVES.index(got.k_star) - HALF_OCTAVES.index(planted)) <= 1, (
        got.reason
    )  # within a grid step
    assert got.ci is not None and got.ci[0] <= planted <= got.ci[1]
    # the interval is of the estimator that gave K* (the same weights), so it holds K* itself
    assert got.ci[0] <= got.k_star <= got.ci[1]
    assert got.test.slope_before < -0.05 and abs(got.test.slope_after) < 0.03
    # flat after the planted bend: an interval around 0, holding the estimate
    lo, hi = got.test.slope_after_ci
    assert lo <= got.test.slope_after <= hi and lo < 0.0 < hi + 0.005 and hi - lo < 0.08
    assert (got.unit, got.n_clusters) == ("book", 12) and f"K* = {got.k_star}" in got.reason
    # L(K) falls to the plateau, then is flat: the curve and its per-K cluster intervals
    curve = np.array(got.curve)
    assert curve[0] - curve[HALF_OCTAVES.index(planted)] > 0.1
    assert np.all(np.array(got.lo) <= curve) and np.all(curve <= np.array(got.hi))


def test_an_octave_grid_is_too_coarse_for_k_star_and_says_which_key_to_change() -> None:
    """The rerun's first grids scored 7 octave contexts (8..512): the bend test needs 4 on each side of a
    breakpoint, so it never ran, and the null level of a test that never runs (0.000) read like a conservative
    test. The same planted bend on the octave subset of the half-octave grid: no K*, and the reason names the key."""
    octaves = (8, 16, 32, 64, 128, 256, 512)
    loss, ids = simulate_truncation(np.random.default_rng(32), 12, 36, HALF_OCTAVES, 64, 0.1, 32)
    on_octaves = loss[[HALF_OCTAVES.index(k) for k in octaves]]
    coarse = k_star(on_octaves, octaves, ids, "book", n_boot=499)
    assert coarse.k_star is None and "train.eval_contexts" in coarse.reason and "needs >= 8" in coarse.reason
    assert (
        k_star(loss, HALF_OCTAVES, ids, "book", n_boot=499).k_star is not None
    )  # the same data, 13 contexts
    level = false_plateau_rate(12, 36, octaves, n_positions=64, n_sims=5, n_boot=99)
    assert "no K* test" in level.describe() and "false-plateau rate" not in level.describe()


def test_no_k_star_on_a_continuing_gain() -> None:
    loss, ids = simulate_truncation(np.random.default_rng(5), 12, 36, HALF_OCTAVES, 64, gain=0.1)
    got = k_star(loss, HALF_OCTAVES, ids, "book", n_boot=499)
    assert got.k_star is None and got.ci is None and "no bend detectable" in got.reason
    assert got.curve[0] - got.curve[-1] > 0.3  # the gain is there, it just does not stop


def test_null_false_plateau_rate_at_level() -> None:
    rate = false_plateau_rate(12, 36, HALF_OCTAVES, n_positions=64, n_sims=400, n_boot=499, seed=0)
    assert rate.rate <= rate.alpha + 2 * rate.mc_se, rate.describe()
    assert rate.design["n_clusters"] == 12 and "12 clusters, 36 sequences, 64 positions" in rate.describe()


def test_four_clusters_cannot_reject_with_sign_flips() -> None:
    """2^4 = 16 sign patterns: the observed one ties itself, so p >= 2 / 17 > 0.05 however strong the bend; the
    resampling null, which treats 4 clusters' spread as known, rejects (and is liberal there: measured 0.126 at
    alpha 0.05 on null curves with 4 clusters and 74 sequences, against 0.000 for the sign flips)."""
    loss, ids = simulate_truncation(np.random.default_rng(0), 4, 36, HALF_OCTAVES, 64, 0.1, 45)
    flipped = k_star(loss, HALF_OCTAVES, ids, "book", n_boot=499)
    assert flipped.k_star is None and flipped.test.p_value >= 2 / 17
    assert k_star(loss, HALF_OCTAVES, ids, "book", n_boot=499, null="bootstrap").k_star is not None


def test_errors() -> None:
    loss = np.ones((3, 4, 5))
    with pytest.raises(ValueError, match=r"must be \[2 contexts, windows, positions\]"):
        k_star(loss, (8, 16), [0, 0, 1, 1], "book")
    with pytest.raises(ValueError, match="contexts must increase"):
        k_star(loss, (8, 32, 16), [0, 0, 1, 1], "book")
    with pytest.raises(ValueError, match="null='perm': must be one of"):
        k_star(loss, (8, 16, 32), [0, 0, 1, 1], "book", null="perm")
    with pytest.raises(ValueError, match="need 2 <= n_clusters <= n_sequences"):
        false_plateau_rate(10, 5)


def test_the_interval_comes_from_the_replicates_scored_with_the_tests_weights() -> None:
    """Sign-flip draws weigh the test; t*'s CI comes from the resampled curves (`replicates`), scored with those
    same weights: replicates that all bend where the observed curve bends give a CI of that one breakpoint."""
    from pipeline.scaling.analyses.plateau import hinge_bend_test

    x = np.log(np.asarray(HALF_OCTAVES, dtype=float))
    bend = HALF_OCTAVES.index(45)
    curve = -0.1 * np.minimum(x, x[bend])  # falls, then flat after K = 45
    rng = np.random.default_rng(0)
    flips = rng.normal(0, 0.002, (199, len(x))) * np.linspace(3, 1, len(x))  # noisier at short K
    replicates = curve + rng.normal(0, 1e-4, (50, len(x)))
    test = hinge_bend_test(curve, flips, positions=np.asarray(HALF_OCTAVES) - 1, replicates=replicates)
    assert test.position == 44 and test.ci == (44, 44)


def test_the_interval_ends_on_contexts_of_the_grid() -> None:
    """On half octaves the replicates' breakpoints are grid contexts; an interpolated percentile between two of
    them (44 and 63 -> 48) would name a context that was never scored. 2 of 50 replicates bend at K = 45, the rest
    at 64: the 2.5th percentile is the second-lowest replicate's, K = 45, not a point between."""
    from pipeline.scaling.analyses.plateau import hinge_bend_test

    x = np.log(np.asarray(HALF_OCTAVES, dtype=float))
    at = {k: -0.1 * np.minimum(x, x[HALF_OCTAVES.index(k)]) for k in (45, 64)}
    rng = np.random.default_rng(0)
    flips = rng.normal(0, 0.002, (199, len(x)))
    replicates = np.stack([at[45]] * 2 + [at[64]] * 48) + rng.normal(0, 1e-5, (50, len(x)))
    test = hinge_bend_test(at[64], flips, positions=np.asarray(HALF_OCTAVES) - 1, replicates=replicates)
    assert test.ci == (44, 63)


def test_the_slope_after_k_star_has_an_interval_that_tells_a_model_still_gaining() -> None:
    """Planted: -0.1 nats per e-fold up to K = 45, then -0.03 (still gaining, slower). The test finds the bend and
    the slope after it has an interval that holds -0.03 and excludes 0: "bends" is not "stops gaining"."""
    loss, ids = simulate_truncation(
        np.random.default_rng(1), 12, 36, HALF_OCTAVES, 64, 0.1, 45, gain_after=0.03
    )
    got = k_star(loss, HALF_OCTAVES, ids, "book", n_boot=499)
    assert got.k_star is not None, got.reason
    lo, hi = got.test.slope_after_ci
    assert lo < -0.03 < hi < 0.0, (lo, hi)
    assert f"[{lo:.3g}, {hi:.3g}] nats per e-fold after K*" in got.reason
