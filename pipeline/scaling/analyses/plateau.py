"""Where does a recurrent model stop gaining from context relative to the Transformer? A calibrated bend test.

rho(t) = log(L_arch(t) / L_ref(t)) by target position t. If both gain from context alike, rho is flat (or
straight) in x = log(t + 1). A *plateau at t** means the slope of rho in x rises after t*: beyond t* the
reference keeps gaining from context and the recurrent model gains less. The test:

- null H0: rho(x) = a + b x (no bend); alternative: rho(x) = a + b x + c max(0, x - x_k), c > 0 (one-sided: a
  bend *down* would mean the recurrent model gains more from late context, which is not a plateau);
- weighted least squares, weights 1 / var(rho(t)) from the bootstrap over validation sequences;
- statistic S = max over breakpoints k of z_k, the weighted score of the hinge term orthogonalised against
  [1, x] (S^2 is the likelihood-ratio statistic of the best hinge at known variances);
- the sup over k makes S's null law non-standard (Davies 1987), so it is calibrated by the bootstrap itself:
  S is invariant to adding any a + b x, so the centred bootstrap replicates (rho*_b - mean rho*) are draws of the
  noise alone, with its correlations across positions; p = (1 + #{S_b >= S}) / (B + 1);
- t* is reported only when p < alpha, with a percentile CI over the bootstrap replicates' own best breakpoints.

Written by hand because neither scipy nor statsmodels ships a one-sided segmented-regression test with a
bootstrap-calibrated sup statistic; the linear algebra is numpy's QR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.analyses.positions import MIN_SEQS, N_BOOT, mean_loss_by_position, paired_log_ratio
from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.token_losses import TOKEN_LOSS_FILE, TokenLosses

ALPHA = 0.05  # level of the "no bend" test
MIN_SIDE = 4  # positions required on each side of a breakpoint
N_GRID = 48  # at most this many log-spaced candidate breakpoints


@dataclass
class BendTest:
    """Result of `hinge_bend_test`. Positions are 0-based target indices (t = 0: the first target token)."""

    position: int | None  # t*, only when "no bend" is rejected at alpha
    ci: tuple[int, int] | None  # 95 % percentile CI of t* over the bootstrap replicates
    p_value: float
    stat: float  # S = max_k z_k of the observed curve
    best_position: int | None  # the best breakpoint whether or not the test rejects
    slope_before: float  # d rho / d log(t + 1) up to the best breakpoint (WLS hinge fit)
    slope_after: float  # ... and after it
    positions: list[int] = field(default_factory=list)  # positions the test used
    fitted: list[float] = field(default_factory=list)  # the hinge fit at those positions
    reason: str = ""
    # 95 % percentile CI of slope_after over the resampled curves, each fitted at the same breakpoint and weights
    slope_after_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidates(n: int, min_side: int, n_grid: int) -> np.ndarray:
    """Indices k (into the used positions) of candidate breakpoints: >= min_side points up to and including k
    and after k, at most n_grid of them spaced evenly in log position."""
    lo, hi = min_side - 1, n - min_side - 1
    if hi < lo:
        return np.array([], dtype=int)
    ks = np.arange(lo, hi + 1)
    if len(ks) <= n_grid:
        return ks
    return np.unique(np.round(np.geomspace(lo + 1, hi + 1, n_grid)).astype(int) - 1)


def _hinge_scores(x: np.ndarray, sw: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Unit vectors u_k [K, n]: the weighted hinge max(0, x - x_k) orthogonalised against the weighted [1, x]."""
    q0, _ = np.linalg.qr(sw[:, None] * np.stack([np.ones_like(x), x], axis=1))
    h = sw[None, :] * np.maximum(0.0, x[None, :] - x[ks, None])
    h -= (h @ q0) @ q0.T
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def _hinge_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, xk: float) -> tuple[np.ndarray, np.ndarray]:
    """WLS fit of [1, x, max(0, x - xk)] to ``y`` ([n], or [n, R]: R curves at once): coefficients and fit."""
    design = np.stack([np.ones_like(x), x, np.maximum(0.0, x - xk)], axis=1)
    sw = np.sqrt(w)
    weighted = sw * y if y.ndim == 1 else sw[:, None] * y
    beta, *_ = np.linalg.lstsq(sw[:, None] * design, weighted, rcond=None)
    return beta, design @ beta


def hinge_bend_test(
    rho: np.ndarray,
    boot: np.ndarray,
    positions: np.ndarray | None = None,
    alpha: float = ALPHA,
    min_side: int = MIN_SIDE,
    n_grid: int = N_GRID,
    replicates: np.ndarray | None = None,
) -> BendTest:
    """Test rho (one value per position) for an upward bend in log position; ``boot`` [B, len(rho)] holds its
    bootstrap replicates over validation sequences (paired for a ratio). NaN entries of ``rho`` and positions
    whose bootstrap variance is 0 or NaN are left out. ``positions`` defaults to 0..len(rho)-1.

    ``replicates`` [R, len(rho)]: resampled curves whose best breakpoints give t*'s CI, when ``boot`` holds draws
    of the null instead (sign flips); they are scored with the same weights as ``rho``, so the CI is that of the
    estimator that gave t* (default: ``boot``)."""
    rho, boot = np.asarray(rho, dtype=float), np.asarray(boot, dtype=float)
    pos = np.arange(len(rho)) if positions is None else np.asarray(positions)
    if boot.ndim != 2 or boot.shape[1] != len(rho):
        raise ValueError(f"boot must be [n_boot, {len(rho)}], got shape {boot.shape}")
    with np.errstate(all="ignore"):
        var = np.nanvar(boot, axis=0, ddof=1) if len(boot) > 1 else np.full(len(rho), np.nan)
    keep = np.isfinite(rho) & np.isfinite(var) & (var > 0) & np.isfinite(boot).all(axis=0)
    x, y, w = np.log(pos[keep] + 1.0), rho[keep], 1.0 / var[keep]
    ks = _candidates(len(y), min_side, n_grid)
    empty = BendTest(
        None, None, float("nan"), float("nan"), None, float("nan"), float("nan"), [int(p) for p in pos[keep]]
    )
    if len(ks) == 0 or len(boot) < 2:
        empty.reason = f"too few positions with a bootstrap spread ({len(y)}) or replicates ({len(boot)})"
        return empty
    sw = np.sqrt(w)
    u = _hinge_scores(x, sw, ks)
    z_obs = u @ (sw * y)
    z_null = ((boot[:, keep] - boot[:, keep].mean(axis=0)) * sw) @ u.T
    stat = float(z_obs.max())
    p = float((1 + np.sum(z_null.max(axis=1) >= stat)) / (len(boot) + 1))
    best = int(ks[int(np.argmax(z_obs))])
    beta, fitted = _hinge_fit(x, y, w, x[best])
    curves = boot if replicates is None else np.asarray(replicates, dtype=float)
    z_boot = (curves[:, keep] * sw) @ u.T  # [R, K]: each resampled curve's hinge scores
    t_boot = pos[keep][ks[np.argmax(z_boot, axis=1)]]
    # the replicates' own breakpoints at the tails (no interpolation): on a sparse grid (K* over half octaves)
    # an interpolated percentile names a position that is no candidate (65 between 63 and 90)
    ci = (int(np.percentile(t_boot, 2.5, method="lower")), int(np.percentile(t_boot, 97.5, method="higher")))
    # how fast the curve still moves after the bend: each resampled curve fitted at the observed breakpoint
    rep_beta, _ = _hinge_fit(x, curves[:, keep].T, w, x[best])
    after = rep_beta[1] + rep_beta[2]
    after_ci = (float(np.percentile(after, 2.5)), float(np.percentile(after, 97.5)))
    rejects = p < alpha and stat > 0
    t_best = int(pos[keep][best])
    if rejects:
        reason = (
            f"'no bend' rejected (p = {p:.3g} < {alpha}): the log ratio's slope in log position rises from "
            f"{beta[1]:.3g} to {beta[1] + beta[2]:.3g} after t = {t_best}"
        )
    else:
        reason = f"no bend detectable (p = {p:.3g} >= {alpha}; best candidate t = {t_best})"
    return BendTest(
        t_best if rejects else None,
        ci if rejects else None,
        p,
        stat,
        t_best,
        float(beta[1]),
        float(beta[1] + beta[2]),
        [int(v) for v in pos[keep]],
        [float(v) for v in fitted],
        reason,
        after_ci,
    )


@dataclass
class Plateau:
    """Where architecture a stops gaining from context relative to the reference b (see the module docstring).

    ``log_ratio`` is the unsmoothed rho(t) per position (NaN where unmeasured); ``source`` says whether it came
    from per-token losses (CIs, tested) or from the records' mean curves (no CI, no test)."""

    position: int | None
    log_ratio: list[float]
    reason: str
    ci: tuple[int, int] | None = None
    log_ratio_lo: list[float] = field(default_factory=list)
    log_ratio_hi: list[float] = field(default_factory=list)
    p_value: float | None = None
    paired: bool = False
    source: str = "record.loss_by_position"
    test: BendTest | None = None

    def to_dict(self) -> dict[str, Any]:
        keys = ("position", "ci", "p_value", "paired", "source", "reason")
        out = {k: getattr(self, k) for k in keys}
        out["test"] = None if self.test is None else self.test.to_dict()
        return out


def _nan_list(v: np.ndarray) -> list[float]:
    return [float(x) for x in v]


def _side_losses(records: Sequence[Any], files: RunFiles | None) -> TokenLosses | None:
    """One side's per-token losses: the mean over its runs (aligned by seq_id; runs treated as fixed), or None
    when any run lacks the npz."""
    if files is None or not records:
        return None
    sides = [files.token_losses(r.run) for r in records]
    if any(s is None for s in sides):
        return None
    if len(sides) == 1:
        return sides[0]
    ids = sides[0].seq_id
    t = min(s.loss.shape[1] for s in sides)
    stacked = []
    for s in sides:
        if not np.array_equal(np.sort(s.seq_id), np.sort(ids)):
            raise ValueError(f"{s.source}: validation sequences differ from {sides[0].source}")
        stacked.append(s.loss[np.argsort(s.seq_id)][:, :t])
    return TokenLosses(np.mean(stacked, axis=0), np.sort(ids), sides[0].source)


def position_plateau(
    records_a: Sequence[Any],
    records_b: Sequence[Any],
    sweep_dir: str | Path | RunFiles | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Plateau:
    """Plateau of architecture a (runs ``records_a``) against reference b, from ``<sweep_dir>/<run>/``
    valid_token_losses.npz (paired bootstrap + `hinge_bend_test`; ``sweep_dir`` may be the sweep's `RunFiles`).
    Without those files (records written before them), only the records' mean curves' log ratio, with no CI and
    no test: t* is then not reported."""
    files = None if sweep_dir is None else run_files_of(sweep_dir)
    ta, tb = _side_losses(records_a, files), _side_losses(records_b, files)
    if ta is None or tb is None:
        why = f"no {TOKEN_LOSS_FILE} for these runs: log ratio of the records' mean curves, no CI, no plateau test"
        return _fallback(records_a, records_b, why)
    try:
        rho = paired_log_ratio(ta, tb, n_boot, seed)
    except ValueError as err:  # different validation sets: said in the report instead of failing it
        return _fallback(records_a, records_b, f"{err}; log ratio of the records' mean curves, not tested")
    used = rho.n_seqs >= MIN_SEQS
    test = hinge_bend_test(np.where(used, rho.mean, np.nan), rho.boot)
    return Plateau(
        test.position,
        _nan_list(rho.mean),
        test.reason,
        test.ci,
        _nan_list(rho.lo),
        _nan_list(rho.hi),
        test.p_value,
        True,
        TOKEN_LOSS_FILE,
        test,
    )


def _fallback(records_a: Sequence[Any], records_b: Sequence[Any], why: str) -> Plateau:
    la, lb = mean_loss_by_position(records_a), mean_loss_by_position(records_b)
    t = min(len(la), len(lb))
    with np.errstate(all="ignore"):
        rho_mean = np.log(la[:t]) - np.log(lb[:t])
    return Plateau(None, _nan_list(rho_mean), why)
