"""Bootstrap confidence intervals for the fits in ``laws.py``: which resampling each fit gets, and why.

Studentized residual bootstrap for power laws fitted to points; BCa over two-stage (point, then seed) resamples for
everything else (``intervals.py`` has the interval arithmetic; ``FitResult.interval`` names the one used). Coverage
on synthetic grids is tested in ``tests/unit/test_scaling_intervals.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.scaling.fits.intervals import bca_interval, group_bootstrap, studentized_power_law
from pipeline.scaling.fits.laws import (
    FitResult,
    e_jacobian,
    e_residuals,
    fit_chinchilla,
    fit_power_law,
    underdetermined,
)

Tick = Callable[[], None]


def _no_tick() -> None:
    return None


def bootstrap_groups(
    fit_on: Callable[[list[np.ndarray]], FitResult],
    groups: Sequence[np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    tick: Tick = _no_tick,
) -> FitResult:
    """Fit on every point, then on ``n_boot`` two-stage resamples (points, then the seeds inside each); BCa CIs.

    ``groups`` holds one array of run indices per point (its seeds); ``fit_on(draw)`` fits a list of them. A
    resample that repeats one point and drops another refits on fewer distinct points, which is what makes the
    interval honest about how few there are. Underdetermined or non-finite resamples are dropped and counted."""
    result = fit_on(list(groups))
    if result.underdetermined or n_boot <= 0:
        return result
    if len(groups) < 2:  # every resample would be that one point again: a zero-width "interval"
        return underdetermined(result.form, list(result.params), result.n_points, (
            "one point (one size at one budget): a fit to one run's validation curve is a learning curve, "
            "not a scaling law, and resampling one point gives no interval"))  # fmt: skip
    names = list(result.params)

    def values(draw: list[np.ndarray]) -> tuple[bool, np.ndarray]:
        r = fit_on(draw)
        return not r.underdetermined, np.array([r.params[k] for k in names])

    rows, jack = group_bootstrap(values, groups, n_boot, rng, tick)
    result.n_boot, result.n_boot_ok = n_boot, len(rows)
    if len(rows):
        result.samples = rows
        lo, hi = bca_interval(np.array([result.params[k] for k in names]), rows, jack)
        result.ci = {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)}
        result.interval = "BCa over points" if jack is not None else "bias-corrected percentile over points"
    return result


def bootstrap(
    fit_on: Callable[[np.ndarray], FitResult],
    n_items: int,
    n_boot: int = 400,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    tick: Tick = _no_tick,
) -> FitResult:
    """``bootstrap_groups`` with one run per point: ``fit_on(indices)`` fits a subset of the items."""
    groups = [np.array([i]) for i in range(n_items)]
    rng = np.random.default_rng(seed) if rng is None else rng
    return bootstrap_groups(lambda draw: fit_on(np.concatenate(draw)), groups, n_boot, rng, tick)


def _studentized_e(full: FitResult, x: np.ndarray, loss: np.ndarray, n_boot: int, rng, tick: Tick) -> bool:
    """Studentized residual bootstrap for L = E + (x_c/x)^alpha (see ``intervals.studentized_power_law``), with
    Gauss-Newton standard errors per resample. Fills ``full``'s CIs; False if the data give no standard errors."""
    names = ("alpha", "log_x_c", "E")
    if len(full.se) != 3 or not all(math.isfinite(v) and v > 0 for v in full.se.values()):
        return False
    lx, ly = np.log(x), np.log(loss)
    jac = e_jacobian(full.theta, lx, ly)
    lev = np.clip(np.einsum("ij,jk,ik->i", jac, np.linalg.pinv(jac.T @ jac), jac), 0, 0.99)
    fitted = ly + e_residuals(full.theta, lx, ly)
    adj = (ly - fitted) / np.sqrt(1 - lev)
    adj -= adj.mean()
    est = np.array(full.theta)
    t_rows, rows = [], []
    for _ in range(n_boot):
        r = fit_power_law(x, np.exp(fitted + adj[rng.integers(0, len(x), len(x))]), True, [full.theta])
        tick()
        se = np.array([r.se.get(k, math.nan) for k in names])
        if not r.underdetermined and np.all(np.isfinite(se)) and np.all(se > 0):
            t_rows.append((r.theta - est) / se)
            rows.append([r.params["alpha"], r.params["x_c"], r.params["E"]])
    if len(rows) < max(2, n_boot // 2):
        return False
    t_lo, t_hi = np.percentile(np.array(t_rows), [2.5, 97.5], axis=0)
    se = np.array([full.se[k] for k in names])
    lo, hi = est - t_hi * se, est - t_lo * se
    with np.errstate(over="ignore"):  # an unbounded log x_c interval becomes [.., inf]
        full.ci = {"alpha": (float(lo[0]), float(hi[0])), "x_c": (float(np.exp(lo[1])), float(np.exp(hi[1]))),
                   "E": (float(max(lo[2], 0.0)), float(min(hi[2], loss.min())))}  # fmt: skip
    full.samples, full.n_boot, full.n_boot_ok = np.array(rows), n_boot, len(rows)
    full.interval = "studentized residual bootstrap"
    return True


def fit_power_law_bootstrap(
    x: Any,
    loss: Any,
    with_e: bool = False,
    n_boot: int = 400,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    tick: Tick = _no_tick,
) -> FitResult:
    """Power law fitted to points (repeated x = several seeds) with a studentized residual bootstrap CI; where the
    fit leaves no residual degree of freedom, a BCa bootstrap over points instead (``interval`` says which)."""
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    rng = np.random.default_rng(seed) if rng is None else rng
    full = fit_power_law(x, loss, with_e)
    if full.underdetermined or n_boot <= 0:
        return full
    if with_e:
        if _studentized_e(full, x, loss, n_boot, rng, tick):
            return full
        tick = _no_tick  # its resamples were counted already
    if not with_e:
        st = studentized_power_law(x, loss, n_boot, rng)
        for _ in range(n_boot):
            tick()
        if st["ok"]:
            full.ci, full.se, full.samples = st["ci"], st["se"], st["samples"]
            full.n_boot, full.n_boot_ok = n_boot, len(full.samples)
            full.interval = "studentized residual bootstrap"
            return full
    return bootstrap(lambda i: fit_power_law(x[i], loss[i], with_e), len(x), n_boot, rng=rng, tick=tick)


def fit_chinchilla_bootstrap(
    n: Any,
    d: Any,
    loss: Any,
    n_boot: int = 400,
    seed: int = 0,
    n_starts: int | None = 64,
    boot_starts: int = 4,
    groups: Sequence[np.ndarray] | None = None,
    rng: np.random.Generator | None = None,
    tick: Tick = _no_tick,
) -> FitResult:
    """Chinchilla fit plus BCa bootstrap over points (``groups``: run indices per (N, D) point, default one run
    each; a point's loss is the mean over its drawn seeds). Each resample starts from the full-data optimum and its
    ``boot_starts`` best grid points (a full grid per resample would cost n_starts/boot_starts times more for the
    same optimum)."""
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    groups = [np.array([i]) for i in range(len(n))] if groups is None else list(groups)
    rng = np.random.default_rng(seed) if rng is None else rng

    def points(draw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first = np.array([g[0] for g in draw])
        return n[first], d[first], np.array([loss[g].mean() for g in draw])

    full = fit_chinchilla(*points(groups), n_starts=n_starts)
    if full.underdetermined:
        return full
    starts = [full.theta]

    def fit_on(draw: list[np.ndarray]) -> FitResult:
        if (
            draw is not None
            and len(draw) == len(groups)
            and all(a is b for a, b in zip(draw, groups, strict=True))
        ):
            return full
        return fit_chinchilla(*points(draw), n_starts=boot_starts, extra_starts=starts)

    return bootstrap_groups(fit_on, groups, n_boot, rng, tick)
