"""`pipeline scaling coverage`: the L_A / L_B interval's coverage on simulated copies of a sweep's design."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.scaling.tools.coverage import (
    bias_check,
    coverage,
    frontier_fit,
    kept_runs,
    seed_deviations,
)

SIZES = (2e4, 6e4, 2e5, 6e5)
BUDGETS = (50_000, 150_000, 450_000)


def sweep(arch: str, a: float, noise: float, rng: np.random.Generator) -> list[RunRecord]:
    """4 sizes x 3 budgets x 2 seeds from L = 1 + a/N^0.3 + 30/D^0.25, 3 validations per run, one offset per run."""
    out = []
    for n in SIZES:
        for tokens in BUDGETS:
            for seed in (1, 2):
                scale = math.exp(rng.normal(0, noise))

                def loss(t: float, n: float = n, scale: float = scale) -> float:
                    return (1 + a / n**0.3 + 30 / t**0.25) * scale

                curve = [
                    {"step": k, "tokens": tokens * k // 3, "loss": loss(tokens * k // 3)} for k in (1, 2)
                ]
                fpt = 6 * n
                out.append(RunRecord(f"{arch}-{n:g}-{tokens}-s{seed}", arch, int(2 * n), int(n), fpt, tokens,
                                     fpt * tokens, 0.5, loss(tokens), loss(tokens), seed=seed, lr=1e-3,
                                     valid_curve=curve))  # fmt: skip
    return out


def test_seed_deviations_are_centred_per_point_and_rescaled_and_required():
    rng = np.random.default_rng(0)
    runs = sweep("lstm", 40.0, 0.05, rng)
    devs = seed_deviations(runs)
    assert len(devs) == len(runs)  # every point has 2 seeds
    # two seeds: each deviation is +-(log a - log b)/2 * sqrt(2)
    a, b = runs[0].final_valid_loss, runs[1].final_valid_loss
    assert abs(devs[0]) == pytest.approx(abs(math.log(a) - math.log(b)) / 2 * math.sqrt(2))
    assert devs.sum() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="no point has 2 or more seeds"):
        seed_deviations([r for r in runs if r.seed == 1])


def test_the_ratio_interval_covers_the_pseudo_true_ratio_and_a_zero_width_one_would_not():
    rng = np.random.default_rng(1)
    records = sweep("lstm", 40.0, 0.04, rng) + sweep("transformer", 20.0, 0.01, rng)
    result = coverage(records, "lstm", "transformer", reps=30, n_boot=60, seed=3)
    assert result["kept_runs"] == {"lstm": 24, "transformer": 24}
    # the estimand is the fitter's answer on noise-free data: near the surfaces' own ratio at that compute
    n_top, d_top = SIZES[-1], BUDGETS[-1]
    surface = (1 + 40 / n_top**0.3 + 30 / d_top**0.25) / (1 + 20 / n_top**0.3 + 30 / d_top**0.25)
    assert result["at_compute"] == pytest.approx(6 * n_top * d_top)
    assert result["true_ratio"] == pytest.approx(surface, rel=0.03)
    ratio = result["coverage"]["ratio"]
    assert (
        ratio["n"] == 30 and ratio["rate"] >= 0.8
    )  # a zero-width interval (the point estimate) covers ~never
    assert 0 < result["ratio_ci_mean_width"] < 0.5


def test_kept_runs_leave_out_other_rates_and_runs_that_learned_nothing():
    rng = np.random.default_rng(2)
    runs = sweep("lstm", 40.0, 0.0, rng)
    worse = [RunRecord(**{**r.__dict__, "run": r.run + "-hi", "lr": 1e-2,
                          "final_valid_loss": r.final_valid_loss + 1, "best_valid_loss": r.final_valid_loss + 1})
             for r in runs]  # fmt: skip
    kept = kept_runs(
        runs + worse, "lstm", unigram_entropy=float(np.median([r.final_valid_loss for r in runs]))
    )
    assert kept and all(r.lr == 1e-3 for r in kept)
    assert len(kept) < len(runs)  # the half at or above the "entropy" learned nothing
    with pytest.raises(ValueError, match="no records of arch 'gru'"):
        kept_runs(runs, "gru")


def test_cli_writes_the_json_and_names_a_missing_arch(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rng = np.random.default_rng(4)
    for r in sweep("lstm", 40.0, 0.04, rng) + sweep("transformer", 20.0, 0.01, rng):
        save_record(tmp_path / r.run / "result.json", r)
    assert cli(["scaling", "coverage", str(tmp_path), "lstm", "gru", "--reps", "2", "--n-boot", "20"]) == 2
    assert "no records of arch 'gru'" in capsys.readouterr().err
    assert (
        cli(["scaling", "coverage", str(tmp_path), "lstm", "transformer", "--reps", "2", "--n-boot", "20"])
        == 0
    )
    result = json.loads((tmp_path / "coverage-lstm-transformer.json").read_text())
    assert result["reps"] == 2 and result["coverage"]["ratio"]["n"] == 2
    assert "covered the truth in" in capsys.readouterr().out


def test_bias_check_subtracts_the_simulated_bias_from_the_observed_estimate():
    got = bias_check(observed=0.15, pseudo_true=0.115, simulated=[0.13, 0.14, 0.15])
    assert got["simulated_mean"] == pytest.approx(0.14) and got["bias"] == pytest.approx(0.025)
    assert got["bias_corrected"] == pytest.approx(0.125) and got["bias_in_sd"] == pytest.approx(2.5)


def test_noisy_seeds_bias_the_frontier_alpha_up_and_the_json_says_by_how_much():
    rng = np.random.default_rng(5)
    records = sweep("lstm", 40.0, 0.08, rng) + sweep("transformer", 20.0, 0.0, rng)
    quiet = coverage(records, "lstm", "transformer", reps=8, n_boot=20, seed=1)["alpha_estimates"]
    # the noise-free side has no seed deviations to draw beyond zeros: its estimates sit on the pseudo-true value
    assert quiet["transformer"]["bias"] == pytest.approx(0.0, abs=1e-6)
    lstm = quiet["lstm"]
    # the lower envelope keeps the runs noise pushed down: the frontier falls faster than the truth's
    assert lstm["bias"] > 0 and lstm["bias_corrected"] == pytest.approx(lstm["observed"] - lstm["bias"])
    # the observed estimate is the fit to the real records, not to a replicate
    assert lstm["observed"] == pytest.approx(
        frontier_fit(kept_runs(records, "lstm"), 0, None).params["alpha"]
    )
