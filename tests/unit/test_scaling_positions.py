"""Loss by position from per-token validation losses: CIs, the paired log ratio, and the calibrated bend test.

Calibration tolerances are binomial: with n trials at a true rate of 5 %, the count of false plateaus exceeds
binom.ppf(0.975, n, 0.05) only 2.5 % of the time, so a detector at nominal size passes (seeds are fixed, so the
tests are deterministic) and the old uncalibrated detector (~70 % false plateaus) fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from pipeline.scaling.analyses.plateau import hinge_bend_test, position_plateau
from pipeline.scaling.analyses.positions import MIN_SEQS, loss_by_position_ci, paired_log_ratio
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.token_losses import (
    TOKEN_LOSS_FILE,
    TokenLosses,
    load_token_losses,
    save_token_losses,
)


def synthetic_pair(rng, n_seq: int, T: int, rho: np.ndarray, sigma: float = 0.45):
    """Per-token losses of a reference and an arch scored on the same sequences: shared sequence difficulty,
    lengths uniform in [T/4, T] (later positions are reached by fewer sequences, as in real targets), and
    E[L_arch(t)] = exp(rho(t)) E[L_ref(t)]. sigma = 0.45 gives SD(rho_hat) ~ 0.022 per position at 600 sequences
    (the noise measured on the CPU study)."""
    t = np.arange(T)
    lengths = rng.integers(T // 4, T + 1, n_seq)
    pad = t[None, :] >= lengths[:, None]
    difficulty = np.exp(rng.normal(0, 0.3, (n_seq, 1)))
    ref = (3.0 + 2.0 / np.sqrt(1 + t)) * difficulty * rng.gamma(4.0, 0.25, (n_seq, T))
    arch = ref * np.exp(rho - sigma**2 / 2 + sigma * rng.normal(size=(n_seq, T)))
    ref[pad] = arch[pad] = np.nan
    return TokenLosses(arch, np.arange(n_seq), "arch"), TokenLosses(ref, np.arange(n_seq), "ref")


def hinge(T: int, t0: int, slope: float) -> np.ndarray:
    x = np.log(np.arange(T) + 1.0)
    return slope * np.maximum(0.0, x - np.log(t0 + 1.0))


def curve_trial(rng, mu: np.ndarray, sd: float, n_boot: int = 199):
    """A measured curve and its bootstrap replicates when each position's estimate has noise SD ``sd``."""
    rho = mu + rng.normal(0, sd, len(mu))
    return hinge_bend_test(rho, rho + rng.normal(0, sd, (n_boot, len(mu))))


@pytest.mark.parametrize(("T", "trials"), [(64, 400), (512, 150)])
def test_flat_or_straight_null_reports_a_plateau_at_most_5_percent_of_the_time(T: int, trials: int):
    rng = np.random.default_rng(T)
    x = np.log(np.arange(T) + 1.0)
    false = 0
    for _ in range(trials):  # flat, or straight in log t (both gain alike, or one a bit more everywhere)
        mu = 0.05 + rng.uniform(-0.02, 0.02) * x
        false += curve_trial(rng, mu, sd=rng.uniform(0.020, 0.025)).position is not None
    assert false <= binom.ppf(0.975, trials, 0.05), f"{false}/{trials} false plateaus"


def test_null_from_per_token_losses_is_calibrated_too():
    """The whole path (paired bootstrap over sequences, unequal counts per position, shared difficulty)."""
    rng, trials, false, sds = np.random.default_rng(7), 100, 0, []
    for i in range(trials):
        a, b = synthetic_pair(rng, 600, 64, np.zeros(64))
        rho = paired_log_ratio(a, b, n_boot=199, seed=i)
        sds.append(np.nanstd(rho.boot[:, :8], axis=0).mean())
        false += (
            hinge_bend_test(np.where(rho.n_seqs >= MIN_SEQS, rho.mean, np.nan), rho.boot).position is not None
        )
    assert 0.018 < np.mean(sds) < 0.027  # the noise level the calibration is claimed at
    assert false <= binom.ppf(0.975, trials, 0.05), f"{false}/{trials} false plateaus"


@pytest.mark.parametrize(("T", "slope", "trials"), [(64, 0.1, 100), (512, 0.05, 50)])
def test_known_bend_is_found_within_a_factor_1_5_of_its_position(T: int, slope: float, trials: int):
    """A log ratio flat up to t0 = T/4 that then rises by ``slope`` per e-fold of position (0.14 resp. 0.07 by
    the end, i.e. 6 resp. 3 noise SDs): found in >= 95 % of trials, within t0 x/ 1.5 in >= 90 % of those, and
    the 95 % CI of t* holds t0 in >= 85 % of them."""
    rng, t0 = np.random.default_rng(1), T // 4
    found = [curve_trial(rng, hinge(T, t0, slope), sd=0.022) for _ in range(trials)]
    hits = [r for r in found if r.position is not None]
    assert len(hits) >= 0.95 * trials
    near = [abs(np.log((r.position + 1) / (t0 + 1))) <= np.log(1.5) for r in hits]
    assert np.mean(near) >= 0.9
    assert np.mean([r.ci[0] <= t0 <= r.ci[1] for r in hits]) >= 0.85
    assert all(r.slope_after > r.slope_before for r in hits)


def test_bend_downward_is_not_a_plateau():
    rng = np.random.default_rng(3)
    r = curve_trial(rng, -hinge(64, 16, 0.2), sd=0.022)  # the recurrent model gains *more* late: no plateau
    assert r.position is None and r.p_value > 0.5


def test_loss_by_position_ci_covers_the_true_means():
    rng, T = np.random.default_rng(0), 32
    truth = 3.0 + 2.0 / np.sqrt(1 + np.arange(T))
    cover = []
    for i in range(40):
        loss = truth * rng.gamma(2.0, 0.5, (300, T))
        curve = loss_by_position_ci(TokenLosses(loss, np.arange(300), "x"), n_boot=200, seed=i)
        cover.append((curve.lo <= truth) & (truth <= curve.hi))
    assert 0.9 <= np.mean(cover) <= 0.99  # nominal 95 % over 40 x 32 intervals


def test_paired_bootstrap_cancels_shared_sequence_difficulty():
    rng = np.random.default_rng(0)
    a, b = synthetic_pair(rng, 400, 32, np.full(32, 0.05))
    paired = paired_log_ratio(a, b, n_boot=300)
    ia, ib = (loss_by_position_ci(x, n_boot=300, seed=s) for x, s in ((a, 1), (b, 2)))
    independent = np.log(ia.boot) - np.log(ib.boot)  # each side resampled on its own
    assert paired.paired
    assert np.nanmean(np.nanstd(paired.boot, axis=0)) < 0.7 * np.nanmean(np.nanstd(independent, axis=0))
    assert np.nanmean((paired.lo <= 0.05) & (paired.hi >= 0.05)) > 0.8


def test_npz_round_trip_alignment_and_errors(tmp_path: Path):
    loss = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]], dtype=np.float32)
    save_token_losses(tmp_path / "run", loss, seq_id=[7, 3])
    tl = load_token_losses(tmp_path / "run")
    assert np.array_equal(tl.loss, loss, equal_nan=True) and list(tl.seq_id) == [7, 3]
    assert load_token_losses(tmp_path / "absent") is None
    # rows in another order but the same ids: aligned before pairing (ratio is exactly 0)
    swapped = TokenLosses(loss[::-1].astype(float), np.array([3, 7]), "b")
    assert np.allclose(paired_log_ratio(tl, swapped, n_boot=5).mean, 0.0)
    with pytest.raises(ValueError, match="validation sequences differ"):
        paired_log_ratio(tl, TokenLosses(loss.astype(float), np.array([7, 4]), "c"), n_boot=5)
    np.savez(tmp_path / "run" / TOKEN_LOSS_FILE, loss=np.ones(3))
    with pytest.raises(ValueError, match=rf"run/{TOKEN_LOSS_FILE}: array 'loss' must be \[N_seq, T_max\]"):
        load_token_losses(tmp_path / "run")
    with pytest.raises(ValueError, match="'seq_id' repeats"):
        save_token_losses(tmp_path / "run", loss, seq_id=[1, 1])


def _record(run: str, arch: str, curve: list[float]) -> RunRecord:
    return RunRecord(run, arch, 2000, 1000, 6e3, 10_000, 6e7, 0.5, 3.0, 2.9, curve, 1.0, {})


def test_position_plateau_uses_npz_when_present_and_says_so_when_not(tmp_path: Path):
    rng = np.random.default_rng(5)
    a, b = synthetic_pair(rng, 600, 64, hinge(64, 20, 0.15))
    save_token_losses(tmp_path / "lstm-a", a.loss)
    save_token_losses(tmp_path / "tf-b", b.loss)
    ra = _record("lstm-a", "lstm", list(np.nanmean(a.loss, axis=0)))
    rb = _record("tf-b", "transformer", list(np.nanmean(b.loss, axis=0)))
    p = position_plateau([ra], [rb], sweep_dir=tmp_path, n_boot=299)
    assert p.paired and p.source == TOKEN_LOSS_FILE and p.p_value < 0.05
    assert abs(np.log((p.position + 1) / 21)) <= np.log(1.5) and p.ci[0] <= 20 <= p.ci[1]
    assert all(lo <= hi for lo, hi in zip(p.log_ratio_lo, p.log_ratio_hi, strict=True) if np.isfinite(lo))
    old = position_plateau([ra], [rb], sweep_dir=tmp_path / "elsewhere")
    assert old.position is None and f"no {TOKEN_LOSS_FILE}" in old.reason and not old.log_ratio_lo
    assert np.allclose(old.log_ratio, p.log_ratio, equal_nan=True)  # same point estimate, no CI
    save_token_losses(tmp_path / "tf-b", b.loss[:-1])  # one validation sequence fewer: cannot be paired
    other = position_plateau([ra], [rb], sweep_dir=tmp_path)
    assert other.position is None and "validation sequences differ" in other.reason and not other.paired
