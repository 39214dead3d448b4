"""Comparing fitted curves and runs: the compute frontier and where two L(C) laws cross (with bootstrap CIs).
Where an architecture stops gaining from target context relative to another is `plateau.py`.
"""

from __future__ import annotations

import math
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
    # "independent": each architecture's resamples come from its own stream (``intervals.fit_rng``), so pairing
    # sample i of one with sample i of the other is an independent draw. "paired" is for matched designs that
    # resample both sides with the same indices (``paired_fits.paired_compare``).
    design: str = "independent"

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
    """Crossing compute and loss ratio of two L(C) fits, with CIs from pairing their i-th bootstrap samples.

    The fits must come from independent resampling streams (``report.fit_arch`` draws each architecture's from
    ``intervals.fit_rng(seed, arch, law)``), so pairing by index is an independent draw; the result says so in
    ``design``. ``paired_fits.paired_compare`` passes fits resampled on shared draws instead (their sample i
    come from the same draw) and relabels ``design`` as paired."""
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
