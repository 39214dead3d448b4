"""Comparing fitted curves and runs: the compute frontier, where two L(C) laws cross (with bootstrap CIs), and
where an architecture stops gaining from target context relative to another (loss by position).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from pipeline.scaling.fit import FitResult


def compute_frontier(compute: Any, loss: Any) -> np.ndarray:
    """Indices of the runs on the lower envelope of loss vs compute: sorted by compute, each has lower loss than
    every run that used less (or equal) compute. With only final-loss records this is the run-level frontier;
    it approximates Kaplan's L(C_min), which also uses intermediate checkpoints."""
    compute, loss = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    keep, best = [], math.inf
    for i in np.lexsort((loss, compute)):
        if loss[i] < best:
            keep.append(int(i))
            best = loss[i]
    return np.array(keep, dtype=int)


def _crossings(fa: FitResult, fb: FitResult, lo: float, hi: float, pa=None, pb=None) -> list[float]:
    grid = np.geomspace(lo, hi, 400)
    with np.errstate(all="ignore"):
        diff = np.log(fa.predict(grid, params=pa)) - np.log(fb.predict(grid, params=pb))
    out = []
    for j in np.flatnonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0):

        def g(lc: float) -> float:
            x = math.exp(lc)
            return float(np.log(fa.predict(x, params=pa)) - np.log(fb.predict(x, params=pb)))

        out.append(math.exp(brentq(g, math.log(grid[j]), math.log(grid[j + 1]))))
    return out


@dataclass
class Crossing:
    """Where two fitted L(C) curves cross within ``search_range``, and how far apart they are at ``at_compute``
    (the largest compute both architectures were measured at)."""

    arch_a: str
    arch_b: str
    search_range: tuple[float, float]
    crossings: list[float]  # every crossing of the point-estimate curves, ascending
    ci: tuple[float, float] | None  # 95 % percentile CI of the first crossing, over resamples that cross
    frac_boot_crossing: float  # share of paired resamples whose curves cross in search_range
    at_compute: float
    loss_ratio: float  # L_a / L_b at at_compute (fitted curves)
    loss_ratio_ci: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["crossings"] = [float(c) for c in self.crossings]
        return d


def compare_curves(
    arch_a: str,
    fit_a: FitResult,
    arch_b: str,
    fit_b: FitResult,
    at_compute: float,
    search_range: tuple[float, float],
) -> Crossing:
    """Crossing compute and loss ratio of two L(C) fits, with CIs from pairing their i-th bootstrap samples
    (the two architectures' runs are resampled independently, so pairing by index is an independent draw)."""
    lo, hi = search_range
    cross = _crossings(fit_a, fit_b, lo, hi)
    ratio = float(fit_a.predict(at_compute) / fit_b.predict(at_compute))
    pairs = list(zip(fit_a.sample_params(), fit_b.sample_params(), strict=False))
    first, ratios = [], []
    for pa, pb in pairs:
        c = _crossings(fit_a, fit_b, lo, hi, pa, pb)
        if c:
            first.append(c[0])
        ratios.append(float(fit_a.predict(at_compute, params=pa) / fit_b.predict(at_compute, params=pb)))
    ci = tuple(float(v) for v in np.exp(np.percentile(np.log(first), [2.5, 97.5]))) if first else None
    ratio_ci = tuple(float(v) for v in np.percentile(ratios, [2.5, 97.5])) if ratios else None
    frac = len(first) / len(pairs) if pairs else math.nan
    return Crossing(arch_a, arch_b, (lo, hi), cross, ci, frac, at_compute, ratio, ratio_ci)


@dataclass
class Plateau:
    position: int | None  # None: no plateau found among the measured positions
    log_ratio: list[float]  # smoothed log(L_a(t) / L_b(t)) per target position t
    reason: str


def mean_loss_by_position(records: Sequence[Any]) -> np.ndarray:
    """Position-wise mean of ``loss_by_position`` over runs, cut to the shortest curve (NaN-aware)."""
    curves = [r.loss_by_position for r in records if r.loss_by_position]
    if not curves:
        return np.array([])
    t = min(len(c) for c in curves)
    with warnings.catch_warnings():  # all-NaN positions stay NaN without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array([c[:t] for c in curves], dtype=float), axis=0)


def position_plateau(
    records_a: Sequence[Any], records_b: Sequence[Any], window: int = 5, tol: float = 0.01
) -> Plateau:
    """Target position after which architecture a (the LSTM) stops improving relative to b (the Transformer).

    Definition: take each side's mean loss-by-position curve, form rho(t) = log(L_a(t) / L_b(t)), smooth it with
    a centred moving average of ``window`` positions, and let rise = rho(last) - min rho. If rise < ``tol``
    (0.01 = 1 % in loss ratio) there is no plateau within the measured positions. Otherwise t* is the last
    position where rho is within 10 % of ``rise`` of its minimum: after t*, a stays measurably further behind b
    than at its best, i.e. extra target context keeps helping b but no longer helps a as much. (The last, not the
    first, near-minimal position, so that a stretch where both improve equally counts as still improving.)
    """
    la, lb = mean_loss_by_position(records_a), mean_loss_by_position(records_b)
    t = min(len(la), len(lb))
    if t < 2:
        return Plateau(None, [], f"too few positions with loss on both sides ({t})")
    with np.errstate(all="ignore"):
        rho = np.log(la[:t]) - np.log(lb[:t])
    ok = np.isfinite(rho)
    kernel = np.ones(max(1, window))
    num = np.convolve(np.where(ok, rho, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    smooth = np.divide(num, den, out=np.full(t, np.nan), where=den > 0)
    if not np.isfinite(smooth).any():
        return Plateau(None, [], "no position has a finite loss on both sides")
    finite = np.flatnonzero(np.isfinite(smooth))
    low = float(np.nanmin(smooth))
    rise = float(smooth[finite[-1]] - low)
    curve = [float(v) for v in smooth]
    if rise < tol:
        return Plateau(None, curve, f"relative log loss rises by {rise:.4f} < {tol} after its minimum")
    t_star = int(finite[smooth[finite] <= low + 0.1 * rise][-1])
    why = f"log loss ratio stays > 10 % of its final rise ({rise:.4f}) above its minimum after t={t_star}"
    return Plateau(t_star, curve, why)
