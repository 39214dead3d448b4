"""Where two fitted L(C) laws cross and how far apart they are, with bootstrap CIs; the compute window both are
compared in; and the architecture every other one is compared against. Where an architecture stops gaining from
target context relative to another is `analyses.plateau`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from pipeline.scaling.fits.laws import FitResult

REFERENCE_ARCH = "transformer"  # the curve the recurrent architectures are compared against
# crossings are searched this factor beyond the measured compute range, and flagged if found there
EXTRAPOLATE = 10.0


def comparison_window(
    range_a: tuple[float, float], range_b: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """Where two L(C) laws are compared (the largest compute both reached: neither is extrapolated there) and the
    range their crossing is searched in; one rule for the report and for `pipeline scaling coverage`."""
    (lo_a, hi_a), (lo_b, hi_b) = range_a, range_b
    return min(hi_a, hi_b), (min(lo_a, lo_b) / EXTRAPOLATE, max(hi_a, hi_b) * EXTRAPOLATE)


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
    # resample both sides with the same indices (``paired_crossing.paired_compare``).
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

    The fits must come from independent resampling streams (``analyses.arch_fit.fit_arch`` draws each architecture's from
    ``intervals.fit_rng(seed, arch, law)``), so pairing by index is an independent draw; the result says so in
    ``design``. ``paired_crossing.paired_compare`` passes fits resampled on shared draws instead (their sample i
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
    with np.errstate(invalid="ignore"):  # a resample whose law overflows gives an inf ratio; inf - inf is NaN
        ratio_ci = tuple(float(v) for v in np.percentile(ratios, [2.5, 97.5])) if ratios else None
    frac = len(first) / len(pairs) if pairs else math.nan
    return Crossing(arch_a, arch_b, (lo, hi), cross, ci, frac, at_compute, ratio, ratio_ci)
