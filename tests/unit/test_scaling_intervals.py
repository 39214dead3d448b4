"""Confidence intervals of the scaling fits: coverage on a synthetic 5 x 3 grid, BCa, two-stage resampling."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from pipeline.scaling.fits.bootstrap import fit_chinchilla_bootstrap, fit_power_law_bootstrap
from pipeline.scaling.fits.intervals import bca_interval, fit_rng, percentile_interval, two_stage_draw

ALPHA = 0.1


def test_power_law_interval_covers_true_exponent_at_nominal_rate_on_5_sizes_x_3_seeds():
    # 5 log-spaced sizes x 3 seeds, 2 % log-normal seed noise, true alpha = 0.1.
    # Tolerance: with 600 replications the binomial SE of a 95 % coverage is 0.0089; requiring >= 0.93 puts the
    # threshold 2.3 SE below nominal (the percentile bootstrap over runs measured 0.925 on this design). The RNG
    # seed is fixed, so the test is deterministic.
    rng = np.random.default_rng(20261201)
    x = np.repeat(np.geomspace(1e5, 1e7, 5), 3)
    reps, hits, widths, exact_widths = 600, 0, [], []
    q = student_t.ppf(0.975, len(x) - 2)
    for _ in range(reps):
        loss = (1e12 / x) ** ALPHA * np.exp(rng.normal(0, 0.02, x.shape))
        fit = fit_power_law_bootstrap(x, loss, n_boot=200, rng=rng)
        lo, hi = fit.ci["alpha"]
        hits += lo < ALPHA < hi
        widths.append(hi - lo)
        exact_widths.append(2 * q * fit.se["alpha"])
    assert fit.interval == "studentized residual bootstrap"
    assert hits / reps >= 0.93
    # not bought by width: on Gaussian noise the exact t interval is optimal; stay within 25 % of its width
    assert np.mean(widths) < 1.25 * np.mean(exact_widths)


def test_power_law_with_irreducible_term_gets_a_studentized_interval_that_contains_the_truth():
    rng = np.random.default_rng(5)
    x = np.repeat(np.geomspace(1e4, 1e8, 6), 3)
    loss = (1.5 + (1e6 / x) ** 0.5) * np.exp(rng.normal(0, 0.003, x.shape))
    fit = fit_power_law_bootstrap(x, loss, with_e=True, n_boot=60, rng=rng)
    assert fit.interval == "studentized residual bootstrap"
    assert fit.ci["alpha"][0] < 0.5 < fit.ci["alpha"][1]
    assert fit.ci["E"][0] < 1.5 < fit.ci["E"][1]
    assert fit.ci["alpha"][1] - fit.ci["alpha"][0] < 0.3


def test_bca_shifts_the_percentile_interval_towards_the_estimate_when_resamples_are_biased():
    samples = np.random.default_rng(0).normal(0.0, 1.0, (4000, 1))
    lo_p, hi_p = percentile_interval(samples)
    median = np.median(samples, axis=0)
    lo0, hi0 = bca_interval(median, samples, None)  # unbiased, no acceleration: the percentile CI
    assert lo0[0] == pytest.approx(lo_p[0], abs=1e-3) and hi0[0] == pytest.approx(hi_p[0], abs=1e-3)
    # the estimate sits at the resamples' 84th percentile (z0 = 1): BCa moves the interval up by about 2 z0 sd
    lo1, hi1 = bca_interval(np.percentile(samples, 84.13, axis=0), samples, None)
    assert lo1[0] > lo_p[0] + 1.0 and hi1[0] > hi_p[0] + 0.3


def test_two_stage_draw_resamples_seeds_inside_points_and_keeps_single_seed_points_whole():
    groups = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5, 6])]
    rng = np.random.default_rng(1)
    draws = [two_stage_draw(groups, rng) for _ in range(200)]
    for draw in draws:
        assert len(draw) == 3
        for g in draw:
            home = next(h for h in groups if g[0] in h)
            assert len(g) == len(home) and set(g) <= set(home)
    assert any(len(set(g)) < 3 for d in draws for g in d if len(g) == 3)  # seeds are resampled, not copied


def test_each_architecture_resamples_from_its_own_stream():
    a, b = fit_rng(0, "lstm", "L_C"), fit_rng(0, "transformer", "L_C")
    assert not np.array_equal(a.integers(0, 15, 15), b.integers(0, 15, 15))
    assert np.array_equal(fit_rng(3, "lstm").integers(0, 99, 9), fit_rng(3, "lstm").integers(0, 99, 9))


def test_chinchilla_bootstrap_over_seed_groups_is_bca_and_contains_truth():
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e5, 1e7, 3), np.geomspace(1e6, 1e9, 4)))
    true = 1.8 + 300.0 / n**0.35 + 800.0 / d**0.3
    n3, d3 = np.repeat(n, 2), np.repeat(d, 2)
    loss = np.repeat(true, 2) * np.exp(np.random.default_rng(2).normal(0, 0.004, 2 * len(n)))
    groups = [np.array([2 * i, 2 * i + 1]) for i in range(len(n))]
    fit = fit_chinchilla_bootstrap(
        n3, d3, loss, n_boot=12, n_starts=4, boot_starts=1, groups=groups, rng=fit_rng(0, "x")
    )
    assert fit.interval == "BCa over points" and fit.n_points == 12
    assert fit.n_boot_ok >= 9
    assert fit.ci["alpha"][0] < 0.35 < fit.ci["alpha"][1]


def test_two_architectures_with_identical_runs_are_resampled_independently():
    # Were both sides to draw the same indices (same seed, runs in the same order), identical data would give
    # identical resamples, and the comparison's interval would be a paired one while it claimed independence.
    from pipeline.scaling.analyses.arch_fit import fit_arch
    from pipeline.scaling.fits.crossing import compare_curves
    from pipeline.scaling.records.run_record import RunRecord

    def runs(arch):
        out = []
        for n in (1e4, 3e4, 1e5, 3e5):
            for tokens in (10_000, 100_000):
                loss = 1.0 + (1e6 / n) ** 0.2 + (1e4 / tokens) ** 0.3
                out.append(RunRecord(f"{arch}-{n:g}-{tokens}", arch, int(2 * n), int(n), 6 * n, tokens,
                                     6 * n * tokens, 0.5, loss, loss, [loss], 1.0, {}))  # fmt: skip
        return out

    a, b = fit_arch(runs("lstm"), n_boot=8), fit_arch(runs("transformer"), n_boot=8)
    assert a.fits["L_C"].params == b.fits["L_C"].params  # same data, same point estimate
    assert not np.array_equal(a.fits["L_C"].samples, b.fits["L_C"].samples)  # different resamples
    cmp = compare_curves("lstm", a.fits["L_C"], "transformer", b.fits["L_C"], 1e12, (1e8, 1e13))
    assert cmp.design == "independent" and cmp.loss_ratio == pytest.approx(1.0)
    assert cmp.loss_ratio_ci[0] < 1.0 < cmp.loss_ratio_ci[1]


def test_a_size_with_one_seed_beside_sizes_with_three_gets_an_interval_not_a_crash():
    """A point alone at its x has leverage 1 (its residual is 0): the studentized bootstrap must not divide 0 by 0,
    which made every resample NaN and the percentile of an empty set raise (seen on a partial context sweep)."""
    for x, loss in (
        (
            [56640, 223872, 223872],
            [5.0606, 5.1531, 5.1283],
        ),  # the partial sweep's numbers (a larger size worse)
        ([1e5, 2e5, 2e5, 2e5], [4.67, 4.47, 4.45, 4.44]),
    ):
        fit = fit_power_law_bootstrap(np.array(x), np.array(loss), n_boot=200, rng=np.random.default_rng(0))
        assert not fit.underdetermined and fit.interval
        lo, hi = fit.ci["alpha"]
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= fit.params["alpha"] <= hi
        assert hi - lo < 10  # not the nonsense of resampling an infinite residual


def test_bca_is_finite_for_parameters_of_astronomical_scale():
    # x_c of a nearly flat power law reaches 1e100 and beyond: d**3 overflowed and the interval came out NaN
    from pipeline.scaling.fits.intervals import bca_interval

    rng = np.random.default_rng(0)
    samples = 10.0 ** rng.uniform(90, 110, size=(200, 1))
    jackknife = 10.0 ** rng.uniform(95, 105, size=(8, 1))
    lo, hi = bca_interval(np.array([1e100]), samples, jackknife)
    assert np.isfinite(lo[0]) and np.isfinite(hi[0]) and samples.min() <= lo[0] < hi[0] <= samples.max()


def test_a_fit_whose_resamples_all_fail_has_no_interval_instead_of_an_error() -> None:
    """Two seeds of one size on the time axis: two frontier points that fit a law exactly, and no resample of them
    does (a reshape of zero rows once raised and stopped the whole report)."""
    from pipeline.scaling.fits.bootstrap import fit_power_law_bootstrap

    fit = fit_power_law_bootstrap([1673.0, 1940.58], [3.8276, 3.8271], n_boot=200)
    assert (fit.n_boot, fit.n_boot_ok, fit.ci) == (200, 0, {})
