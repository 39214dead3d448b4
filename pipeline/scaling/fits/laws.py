"""Scaling-law fits with bootstrap confidence intervals: L(N), L(C), and Chinchilla's L(N, D).

scipy has the optimisers (``np.polyfit``, ``least_squares``, L-BFGS-B) but no scaling-law fitter with Hoffmann et
al.'s (2022) recipe, bootstrap over points and seeds, or crossing search, so those few pieces are written here.
Intervals are in ``bootstrap.py``. Losses are in nats per target
token. Every fit says when it is underdetermined instead of returning numbers that only look like an answer.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# These fits have tens of points; a multithreaded BLAS only adds thread wake-ups, which made L-BFGS-B ~30x slower
# on a busy 2-core machine. Takes effect if scipy's BLAS is not loaded yet; an explicit setting is respected.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from scipy.optimize import least_squares, minimize  # noqa: E402

HUBER_DELTA = 1e-3
# Hoffmann et al. 2022, appendix D.2: the grid of initialisations for (alpha, beta, e, a, b).
HOFFMANN_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
}
CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")


@dataclass
class FitResult:
    """A fitted law, its 95 % CIs (``interval`` says which kind), and whether the data could determine it at all."""

    form: str  # "power_law" (E + (x_c/x)^alpha, E=0 unless fitted) or "chinchilla" (E + A/N^alpha + B/D^beta)
    params: dict[str, float]
    n_points: int  # distinct points the law was fitted to
    n_free: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    underdetermined: bool = False
    reason: str = ""
    objective: float = math.nan
    n_boot: int = 0  # resamples drawn
    n_boot_ok: int = 0  # resamples that were determined and converged (the CI uses only these)
    # (n_boot_ok, len(params)) in params' key order
    samples: np.ndarray | None = field(default=None, repr=False)
    theta: np.ndarray | None = field(default=None, repr=False)  # chinchilla optimum in (a, b, e, alpha, beta)
    interval: str = ""  # how ``ci`` was made: "studentized residual bootstrap", "BCa over points", ...
    se: dict[str, float] = field(
        default_factory=dict
    )  # standard errors where the fit gives them (Jacobian/OLS)
    note: str = ""  # what the fit is, where that matters to reading it (e.g. "fixed D = 1,001,499 tokens")

    @property
    def dof(self) -> int:
        return self.n_points - self.n_free

    def predict(self, x: Any, d: Any = None, params: dict[str, float] | None = None) -> np.ndarray:
        p = self.params if params is None else params
        x = np.asarray(x, dtype=float)
        if self.form == "chinchilla":
            return p["E"] + p["A"] / x ** p["alpha"] + p["B"] / np.asarray(d, dtype=float) ** p["beta"]
        # x_c may under/overflow in bootstrap samples
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return p.get("E", 0.0) + np.exp(p["alpha"] * (np.log(p["x_c"]) - np.log(x)))

    def sample_params(self) -> list[dict[str, float]]:
        if self.samples is None:
            return []
        return [dict(zip(self.params, row, strict=True)) for row in self.samples]

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "params": {k: _finite(v) for k, v in self.params.items()},
            "ci95": {k: [_finite(lo), _finite(hi)] for k, (lo, hi) in self.ci.items()},
            "n_points": self.n_points,
            "n_free": self.n_free,
            "underdetermined": self.underdetermined,
            "reason": self.reason,
            "objective": _finite(self.objective),
            "n_boot": self.n_boot,
            "n_boot_ok": self.n_boot_ok,
            "interval": self.interval,
            "note": self.note,
        }


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def underdetermined(form: str, names: Sequence[str], n_points: int, reason: str) -> FitResult:
    nan = dict.fromkeys(names, math.nan)
    return FitResult(form, nan, n_points, len(names), underdetermined=True, reason=reason)


# ---------------------------------------------------------------- L(x) = E + (x_c / x)^alpha
def e_residuals(p: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    alpha, lxc, e = p
    return np.logaddexp(np.log(max(e, 1e-300)), alpha * (lxc - lx)) - ly


def e_jacobian(p: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Analytic: finite differences were ~1/3 of bootstrap time."""
    alpha, lxc, e = p
    s = np.logaddexp(np.log(max(e, 1e-300)), alpha * (lxc - lx))
    w = np.exp(alpha * (lxc - lx) - s)  # share of the power-law term in L
    return np.stack([w * (lxc - lx), w * alpha, np.exp(-s)], axis=1)


def fit_power_law(x: Any, loss: Any, with_e: bool = False, starts: Sequence[np.ndarray] = ()) -> FitResult:
    """Fit L(x) = (x_c/x)^alpha (+ E) by least squares on log L (so each point counts by its relative error).
    Needs at least as many distinct x as free parameters: 2, or 3 with E (E bounded to [0, min L)).
    ``starts`` (with E): (alpha, log x_c, E) starting points tried besides the three default ones."""
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    names = ("alpha", "x_c", "E") if with_e else ("alpha", "x_c")
    n_distinct = len(np.unique(x))
    if n_distinct < len(names):
        why = f"{n_distinct} distinct x for {len(names)} free parameters ({', '.join(names)})"
        return underdetermined("power_law", names, n_distinct, why)
    lx, ly = np.log(x), np.log(loss)
    if not with_e:
        slope, intercept = np.polyfit(lx, ly, 1)
        alpha = -slope
        with np.errstate(divide="ignore", over="ignore"):
            x_c = float(np.exp(intercept / alpha)) if alpha != 0 else math.inf
        resid = ly - (intercept + slope * lx)
        return FitResult(
            "power_law", {"alpha": alpha, "x_c": x_c}, n_distinct, 2, objective=float(resid @ resid)
        )
    e_max = float(loss.min()) * (1 - 1e-6)
    best = None
    bounds = ([-10, -np.inf, 0], [10, np.inf, e_max])
    inits = []
    for frac in (0.0, 0.5, 0.9):  # E at 0, half and 90 % of the lowest loss; alpha, x_c from log(L - E)
        e0 = frac * e_max
        slope, intercept = np.polyfit(lx, np.log(loss - e0), 1)
        alpha0 = float(np.clip(-slope, 1e-3, 9.0))
        lxc0 = float(intercept / alpha0) if -slope > 1e-3 else float(lx.max())
        inits.append([alpha0, lxc0, e0])
    inits += [[p[0], p[1], min(max(p[2], 0.0), e_max)] for p in starts]
    for p0 in inits:
        sol = least_squares(e_residuals, p0, jac=e_jacobian, bounds=bounds, x_scale="jac", args=(lx, ly))
        if best is None or sol.cost < best.cost:
            best = sol
    alpha, lxc, e = best.x
    params = {"alpha": float(alpha), "x_c": float(np.exp(min(lxc, 700))), "E": float(e)}
    result = FitResult("power_law", params, n_distinct, 3, objective=2 * float(best.cost), theta=best.x)
    if len(x) > 3:  # Gauss-Newton standard errors of (alpha, log x_c, E), for the studentized bootstrap
        jac = e_jacobian(best.x, lx, ly)
        cov = np.linalg.pinv(jac.T @ jac) * (2 * best.cost / (len(x) - 3))
        result.se = dict(zip(("alpha", "log_x_c", "E"), np.sqrt(np.abs(np.diag(cov))).tolist(), strict=True))
    return result


# ---------------------------------------------------------------- Chinchilla L(N, D)
def _huber_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
):
    """Sum of Huber(log-sum-exp(a - alpha log N, b - beta log D, e) - log L) and its gradient in
    theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    t0, t1 = a - alpha * log_n, b - beta * log_d  # the third term is the constant e
    m = np.maximum(np.maximum(t0, t1), e)  # hand-rolled log-sum-exp: scipy's carries ~50 us overhead per call
    x0, x1, x2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(e - m)
    s = x0 + x1 + x2
    r = m + np.log(s) - log_l
    abs_r = np.abs(r)
    f = np.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta)).sum()
    dr = np.clip(r, -delta, delta) / s  # dHuber/dr, times the softmax normaliser
    w0, w1 = dr * x0, dr * x1
    grad = np.array([w0.sum(), w1.sum(), (dr * x2).sum(), -(w0 @ log_n), -(w1 @ log_d)])
    return f, grad


def _grid_objectives(grid: np.ndarray, log_n, log_d, log_l, delta: float) -> np.ndarray:
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    r = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e) - log_l
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)


@functools.cache
def _hoffmann_grid() -> np.ndarray:
    g = HOFFMANN_GRID
    return np.array(list(itertools.product(g["a"], g["b"], g["e"], g["alpha"], g["beta"])))


def fit_chinchilla(
    n: Any,
    d: Any,
    loss: Any,
    delta: float = HUBER_DELTA,
    n_starts: int | None = 64,
    extra_starts: Sequence = (),
) -> FitResult:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta as Hoffmann et al. 2022 do: Huber (delta) on log-loss residuals,
    parametrised as log-sum-exp(a - alpha log N, b - beta log D, e), L-BFGS-B from a grid of initialisations, the
    lowest objective kept. ``n_starts`` runs L-BFGS only from that many grid points with the lowest starting
    objective (None = all 4500); ``extra_starts`` are added (the bootstrap warm-starts from the full-data fit).
    Needs >= 3 distinct N and >= 3 distinct D (each direction has its own coefficient and exponent plus the shared
    E) and >= 5 points."""
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    n_points = len({(float(a), float(b)) for a, b in zip(n, d, strict=True)})
    n_dn, n_dd = len(np.unique(n)), len(np.unique(d))
    if n_dn < 3 or n_dd < 3 or n_points < 5:
        reason = f"{n_dn} distinct N, {n_dd} distinct D, {n_points} points; needs >= 3, >= 3 and >= 5"
        return underdetermined("chinchilla", CHINCHILLA_PARAMS, n_points, reason)
    args = (np.log(n), np.log(d), np.log(loss), delta)
    grid = _hoffmann_grid()
    if n_starts is not None and n_starts < len(grid):
        grid = grid[np.argsort(_grid_objectives(grid, *args))[:n_starts]]
    best = None
    for theta0 in [*grid, *extra_starts]:
        sol = minimize(
            _huber_objective,
            theta0,
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10},
        )
        if np.all(np.isfinite(sol.x)) and (best is None or sol.fun < best.fun):
            best = sol
    a, b, e, alpha, beta = best.x
    with np.errstate(over="ignore"):  # a coefficient past ~e^709 is inf, reported below rather than raised
        params = {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
                  "alpha": float(alpha), "beta": float(beta)}  # fmt: skip
    overflowed = [k for k, v in params.items() if not math.isfinite(v)]
    if overflowed:
        # The optimum ran off to a huge coefficient with a huge exponent (a term that no longer depends on the
        # data): no finite law fits better, so the data cannot pin this form down. A bootstrap drops and counts it.
        reason = (
            f"the fit diverged: {', '.join(overflowed)} overflowed (log-space optimum {np.round(best.x, 1)})"
        )
        return underdetermined("chinchilla", CHINCHILLA_PARAMS, n_points, reason)
    return FitResult("chinchilla", params, n_points, 5, objective=float(best.fun), theta=best.x)
