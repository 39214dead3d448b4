"""L(N) read off the Chinchilla surface: the identified size exponent (D is in the fit)."""

from __future__ import annotations

import math

import numpy as np

from pipeline.scaling.fits.laws import FitResult


def surface_law_n(chin: FitResult) -> FitResult:
    """L(N) = E + (x_c/N)^alpha with x_c = A^(1/alpha): the Chinchilla surface at D -> infinity. Its exponent is
    identified (D is in the fit), unlike a power law through each size's loss at one D."""
    names = ("alpha", "x_c", "E")
    if chin.underdetermined:
        return FitResult("power_law", dict.fromkeys(names, math.nan), chin.n_points, 5, underdetermined=True,
                         reason=chin.reason, note="from the L(N, D) surface")  # fmt: skip

    def law(p: dict[str, float]) -> list[float]:
        with np.errstate(all="ignore"):
            return [p["alpha"], float(np.exp(np.log(p["A"]) / p["alpha"])), p["E"]]

    out = FitResult("power_law", dict(zip(names, law(chin.params), strict=True)), chin.n_points, 5)
    out.note, out.interval, out.n_boot, out.n_boot_ok = "E + A/N^alpha of the L(N, D) surface (D -> inf)", \
        chin.interval, chin.n_boot, chin.n_boot_ok  # fmt: skip
    if chin.samples is not None:
        out.samples = np.array([law(p) for p in chin.sample_params()])
        # in log space: x_c = A^(1/alpha) overflows to inf for small alpha, and percentiles between two infs are
        # inf - inf (numpy's "invalid value encountered in subtract"); a bound that is still undefined is NaN
        with np.errstate(all="ignore"):
            log_xc = np.array([np.log(p["A"]) / p["alpha"] for p in chin.sample_params()])
            lo, hi = np.exp(np.nanpercentile(log_xc, [2.5, 97.5]))
        out.ci = {"alpha": chin.ci["alpha"], "x_c": (float(lo), float(hi)), "E": chin.ci["E"]}
    return out
