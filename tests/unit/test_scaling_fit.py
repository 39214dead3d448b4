"""Scaling-law fitting: recovery of known laws, bootstrap CIs, honest flags, record loading, end-to-end report."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import curve_fit

from pipeline.scaling.analyses.grad_reach import load_grad_reach
from pipeline.scaling.fits.bootstrap import (
    bootstrap_groups,
    fit_chinchilla_bootstrap,
    fit_power_law_bootstrap,
)
from pipeline.scaling.fits.crossing import compare_curves
from pipeline.scaling.fits.frontier import compute_frontier
from pipeline.scaling.fits.laws import fit_chinchilla, fit_power_law
from pipeline.scaling.records.run_record import RunRecord, load_record, save_record
from pipeline.scaling.records.sweep_dir import load_records, load_sweep
from pipeline.scaling.report.fit_json import run_fit
from pipeline.scaling.report.write import write_report

TRUE = {"E": 1.8, "A": 300.0, "alpha": 0.35, "B": 800.0, "beta": 0.3}


def chinchilla_grid(noise: float, seed: int = 0):
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e5, 1e7, 6), np.geomspace(1e6, 1e9, 6)))
    loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
    return n, d, loss * np.exp(np.random.default_rng(seed).normal(0, noise, loss.shape))


def test_chinchilla_recovers_exponents_from_noisy_data():
    # 0.3 % multiplicative noise on 36 runs: alpha and beta within 0.05 absolute, E within 10 %.
    n, d, loss = chinchilla_grid(noise=0.003)
    fit = fit_chinchilla(n, d, loss, n_starts=16)
    assert not fit.underdetermined
    assert fit.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.params["beta"] == pytest.approx(TRUE["beta"], abs=0.05)
    assert fit.params["E"] == pytest.approx(TRUE["E"], rel=0.10)


def test_huber_lbfgs_matches_least_squares_reference_on_clean_data():
    n, d, loss = chinchilla_grid(noise=0.0)
    fit = fit_chinchilla(n, d, loss, n_starts=16)

    def log_law(nd, e, a, b, alpha, beta):
        return np.log(e + a / nd[0] ** alpha + b / nd[1] ** beta)

    ref, _ = curve_fit(
        log_law, np.stack([n, d]), np.log(loss), p0=[1.0, 100.0, 100.0, 0.3, 0.3], maxfev=20000
    )
    for name, value in zip(("E", "A", "B", "alpha", "beta"), ref, strict=True):
        assert fit.params[name] == pytest.approx(value, rel=1e-3), name
        assert fit.params[name] == pytest.approx(TRUE[name], rel=1e-3), name


def test_power_law_recovers_alpha_n_and_irreducible_term():
    rng = np.random.default_rng(1)
    n = np.geomspace(1e4, 1e8, 10)
    loss = (8.8e13 / n) ** 0.076 * np.exp(rng.normal(0, 0.002, n.shape))
    fit = fit_power_law(n, loss)
    assert fit.params["alpha"] == pytest.approx(0.076, abs=0.005)  # stated tolerance: 0.005
    assert math.log10(fit.params["x_c"]) == pytest.approx(math.log10(8.8e13), abs=0.5)

    with_e = 1.5 + (1e6 / n) ** 0.5
    fit_e = fit_power_law(n, with_e, with_e=True)
    assert fit_e.params["alpha"] == pytest.approx(0.5, abs=1e-4)
    assert fit_e.params["E"] == pytest.approx(1.5, abs=1e-4)
    assert (
        fit_power_law(n, with_e).params["alpha"] < 0.3
    )  # without E the exponent is biased: the term matters


def test_bootstrap_ci_contains_truth_and_narrows_with_more_points():
    rng = np.random.default_rng(2)

    def ci_width(n_points: int) -> float:
        n = np.repeat(np.geomspace(1e4, 1e7, 6), n_points // 6)
        loss = (1e12 / n) ** 0.1 * np.exp(rng.normal(0, 0.01, n.shape))
        fit = fit_power_law_bootstrap(n, loss, n_boot=200, seed=0)
        lo, hi = fit.ci["alpha"]
        assert lo < 0.1 < hi
        assert fit.n_boot_ok == 200
        return hi - lo

    assert ci_width(60) < 0.6 * ci_width(6)


def test_underdetermined_fits_are_flagged_not_returned():
    one_size = fit_power_law([1e6, 1e6, 1e6], [3.0, 2.9, 2.8])
    assert one_size.underdetermined and "1 distinct x" in one_size.reason
    assert math.isnan(one_size.params["alpha"])
    assert fit_power_law([1e5, 1e6], [3.0, 2.5], with_e=True).underdetermined
    assert not fit_power_law([1e5, 1e6], [3.0, 2.5]).underdetermined

    n, d, loss = chinchilla_grid(noise=0.0)
    two_sizes = n <= np.unique(n)[1]
    chin = fit_chinchilla_bootstrap(n[two_sizes], d[two_sizes], loss[two_sizes], n_boot=5)
    assert chin.underdetermined and "2 distinct N" in chin.reason and chin.samples is None
    assert chin.to_dict()["params"]["alpha"] is None  # JSON gets null, not NaN


def test_a_fit_over_one_resampled_point_claims_no_interval():
    """One run's validation curve fits a power law, but a bootstrap over points would redraw that one run every
    time: a zero-width interval. Two points give a real one."""
    compute = np.array([1e12, 2e12, 4e12, 8e12])
    loss = 3.0 * (compute / 1e12) ** -0.1 * np.array([1.0, 1.01, 0.99, 1.0])
    curves = [np.arange(4), np.arange(4, 8)]
    x, y = np.concatenate([compute, compute * 10]), np.concatenate([loss, loss * 0.8])

    def fit_on(draw):
        index = np.concatenate(draw)
        return fit_power_law(x[index], y[index])

    one = bootstrap_groups(fit_on, curves[:1], 50, np.random.default_rng(0))
    assert one.underdetermined and "one point" in one.reason and one.ci == {}
    two = bootstrap_groups(fit_on, curves, 50, np.random.default_rng(0))
    assert not two.underdetermined and two.ci["alpha"][1] > two.ci["alpha"][0]


def test_chinchilla_fit_that_runs_off_to_an_overflowing_coefficient_is_flagged_not_raised():
    # Loss flat in N: from a start with a huge N-coefficient and exponent the N-term is ~0 and stays there; e^900
    # used to raise OverflowError and abort the whole report (seen on a bootstrap resample of the CPU study).
    n, d = (g.ravel() for g in np.meshgrid([1e4, 1e5, 1e6], [1e5, 3e5, 1e6]))
    fit = fit_chinchilla(
        n,
        d,
        2 + 30 / d**0.3,
        n_starts=1,
        extra_starts=[np.array([900.0, math.log(30), math.log(2), 100.0, 0.3])],
    )
    assert fit.underdetermined and "A overflowed" in fit.reason


def test_frontier_and_crossing_of_two_compute_laws():
    assert list(compute_frontier([1, 2, 3, 4], [5.0, 6.0, 4.0, 4.5])) == [0, 2]

    c = np.geomspace(1e12, 1e16, 8)
    a = fit_power_law_bootstrap(c, (1e10 / c) ** 0.05, n_boot=20)  # flatter: better at small C
    b = fit_power_law_bootstrap(c, (1e12 / c) ** 0.1, n_boot=20)
    true_cross = math.exp((0.1 * math.log(1e12) - 0.05 * math.log(1e10)) / 0.05)  # 1e14
    cmp = compare_curves("lstm", a, "transformer", b, at_compute=1e16, search_range=(1e11, 1e17))
    assert cmp.crossings[0] == pytest.approx(true_cross, rel=1e-6)
    assert cmp.frac_boot_crossing == 1.0
    assert cmp.loss_ratio == pytest.approx((1e10 / 1e16) ** 0.05 / (1e12 / 1e16) ** 0.1, rel=1e-6)
    none = compare_curves("lstm", a, "transformer", b, at_compute=1e16, search_range=(1e15, 1e17))
    assert none.crossings == [] and none.ci is None


def fake_record(**over) -> RunRecord:
    base = dict(
        run="r", arch="lstm", params=2000, non_embedding_params=1000, flops_per_token=6e3, tokens=10_000
    )
    base |= dict(
        compute=6e7, epochs=0.5, final_valid_loss=3.0, best_valid_loss=2.9, loss_by_position=[4.0, 3.0]
    )
    base |= dict(wall_time_s=1.0, config={})
    return RunRecord(**(base | over))


def test_record_loading_errors_name_file_and_key(tmp_path: Path):
    good = fake_record().to_dict()
    (tmp_path / "a").mkdir()
    save_record(tmp_path / "a" / "result.json", fake_record(run="a"))
    assert load_record(tmp_path / "a" / "result.json") == fake_record(run="a")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["result.json"]  # no temp file left behind
    (tmp_path / "unfinished").mkdir()
    loaded = load_sweep(tmp_path)
    assert [r.run for r in loaded.records] == ["a"] and loaded.skipped == ["unfinished"]

    bad = tmp_path / "b" / "result.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({k: v for k, v in good.items() if k != "tokens"}))
    with pytest.raises(ValueError, match=r"b/result\.json.*'tokens'"):
        load_records(tmp_path)
    bad.write_text(json.dumps(good | {"final_valid_loss": -1.0}))
    with pytest.raises(ValueError, match=r"b/result\.json.*'final_valid_loss'"):
        load_records(tmp_path)


def write_tiny_sweep(sweep: Path) -> None:
    """12 fake records (3 archs x 2 sizes x 2 budgets) following known laws, and one unfinished run directory."""
    rng = np.random.default_rng(3)
    for arch, alpha, fpt in (("lstm", 0.05, 8.0), ("residual_lstm", 0.07, 8.0), ("transformer", 0.1, 6.0)):
        for size in (2e4, 2e5):
            for tokens in (50_000, 400_000):
                loss = 1.0 + (1e7 / size) ** alpha + (1e5 / tokens) ** 0.3 + rng.normal(0, 0.01)
                positions = list(loss + 1.0 / (1 + np.arange(16)) ** (alpha * 5))
                name = f"{arch}-{int(size)}-{tokens}"
                save_record(
                    sweep / name / "result.json",
                    fake_record(
                        run=name,
                        arch=arch,
                        params=int(size) * 2,
                        non_embedding_params=int(size),
                        flops_per_token=fpt * size,
                        tokens=tokens,
                        compute=fpt * size * tokens,
                        epochs=tokens / 100_000,
                        final_valid_loss=loss,
                        best_valid_loss=loss,
                        loss_by_position=positions,
                    ),
                )
    (sweep / "transformer-still-running").mkdir()


def test_tiny_sweep_end_to_end_report(tmp_path: Path):
    sweep = tmp_path / "sweep"
    write_tiny_sweep(sweep)
    report = write_report(sweep, n_boot=10)
    text = report.read_text()
    assert "Gradient reach" not in text  # no run measured it
    for arch in ("lstm", "residual_lstm", "transformer"):
        assert f"**{arch}**" in text
    assert "Data was repeated" in text and "underdetermined" in text and "1 run directories" in text
    for png in ("loss_vs_params.png", "loss_vs_compute.png", "loss_vs_position.png", "position_ratio.png"):
        assert (report.parent / png).stat().st_size > 1000
    fit = json.loads((sweep / "fit.json").read_text())
    assert fit["archs"]["transformer"]["fits"]["chinchilla"]["underdetermined"] is True
    assert fit["archs"]["transformer"]["fits"]["L_N"]["params"]["alpha"] > 0
    assert run_fit(sweep, n_boot=5)["n_runs"] == 12


def write_grad_reach(run_dir: Path, rows: list[tuple[int, list[float]]]) -> None:
    lines = [json.dumps({"step": step, "src": [1.0, 1.0], "tgt": tgt}) for step, tgt in rows]
    (run_dir / "grad_by_position.jsonl").write_text("\n".join(lines) + "\n")


def test_report_gains_gradient_reach_section_from_runs_that_measured_it(tmp_path: Path):
    sweep = tmp_path / "sweep"
    write_tiny_sweep(sweep)
    # lstm: the largest-compute run is the one reported; its signal fades over training (1e-2 -> 1e-4 reach)
    write_grad_reach(
        sweep / "lstm-200000-400000", [(10, [1e-2, 0.1, 1.0]), (20, [1e-4, 1e-2, 1.0, math.nan])]
    )
    write_grad_reach(sweep / "lstm-20000-50000", [(10, [0.5, 1.0])])  # less compute: not the one shown
    write_grad_reach(sweep / "transformer-200000-400000", [(5, [2.0, 1.0, 1.0])])
    text = write_report(sweep, n_boot=10).read_text()
    section = text[text.index("## Gradient reach through time") : text.index("## Caveats")]
    assert (
        "| lstm | lstm-200000-400000 | 2 (steps 10-20) | 0.01 | 0.0001 | 0.0001 | 1 |" in section
    )  # min/max
    assert "| transformer | transformer-200000-400000 | 1 (steps 5-5) | 2 | 2 | 0.5 | 1 |" in section
    assert "residual_lstm |" not in section and "lstm-20000-50000" not in section
    assert (sweep / "grad_reach.png").stat().st_size > 1000

    (sweep / "lstm-200000-400000" / "grad_by_position.jsonl").write_text('{"step": 1, "src"\n')
    with pytest.raises(ValueError, match=r"lstm-200000-400000/grad_by_position.jsonl: line 1 is not JSON"):
        load_grad_reach(sweep)  # what write_report reads it with (a second whole report took ~12 s)


def test_surface_law_n_interval_survives_resamples_whose_x_c_overflows():
    """x_c = A^(1/alpha) is inf for a resample with a tiny alpha; its percentile interval used to compute inf - inf
    (numpy's RuntimeWarning in every study report). Now it is taken in log space, without a warning."""
    import warnings

    from pipeline.scaling.fits.laws import FitResult
    from pipeline.scaling.fits.surface_law import surface_law_n

    params = {"E": 1.0, "A": 10.0, "B": 50.0, "alpha": 0.3, "beta": 0.3}
    chin = FitResult("chinchilla", params, 20, 5)
    rows = [[1.0, 10.0, 50.0, a, 0.3] for a in np.linspace(0.2, 0.4, 38)] + [[1.0, 10.0, 50.0, 1e-3, 0.3]] * 2
    chin.samples = np.array(rows)
    chin.ci = {"alpha": (0.2, 0.4), "E": (0.9, 1.1)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law = surface_law_n(chin)
    lo, hi = law.ci["x_c"]
    assert 10.0 ** (1 / 0.4) <= lo < 10.0 ** (1 / 0.35) and hi > 10.0 ** (1 / 0.2)
