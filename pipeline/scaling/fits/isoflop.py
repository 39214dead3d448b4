"""IsoFLOP profiles (Hoffmann et al. 2022, Approach 2): at each compute budget, loss vs log N is fitted with a
parabola; its minimum is the compute-optimal size N*(C), and D*(C) = C / (FLOPs per token of N*). Power laws
N* = k C^a and D* = k' C^b across budgets give the allocation exponents.

Where the losses at a budget come from: every size's final losses (each a complete schedule) at its token
budgets, interpolated linearly in (log C, log L) to the budget's compute. Intermediate validation points are not
used here: a point in the middle of a cosine schedule is worse than a run trained for exactly that long, which
would bias N* towards sizes whose budgets happen to land near C. numpy's polyfit does the fitting; the
budget selection, interpolation and the residual bootstrap are the few lines written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.scaling.fits.intervals import percentile_interval

MIN_SIZES = 5  # sizes per budget (a parabola through fewer has no residual to speak of)
MIN_BUDGETS = 4


@dataclass
class Profile:
    compute: float
    log_n: list[float]
    loss: list[float]
    coef: list[float]  # parabola in log N: coef[0] (log N)^2 + coef[1] log N + coef[2]
    n_opt: float  # exp(-coef[1] / (2 coef[0])); NaN when the parabola opens downwards
    d_opt: float
    inside: bool  # the minimum lies within the sizes measured (otherwise it is an extrapolated bound)
    n_opt_ci: tuple[float, float] | None = None


@dataclass
class IsoFlopResult:
    profiles: list[Profile]
    exponent_n: float = math.nan  # a in N* ~ C^a
    exponent_d: float = math.nan  # b in D* ~ C^b
    exponent_n_ci: tuple[float, float] | None = None
    exponent_d_ci: tuple[float, float] | None = None
    n_boot: int = 0
    n_boot_ok: int = 0
    underdetermined: bool = False
    reason: str = ""
    interval: str = "residual bootstrap of the parabolas (percentile)"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def f(v):
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "budgets": [
                {
                    "compute": p.compute,
                    "n_opt": f(p.n_opt),
                    "d_opt": f(p.d_opt),
                    "inside": p.inside,
                    "n_opt_ci95": list(p.n_opt_ci) if p.n_opt_ci else None,
                    "sizes": len(p.log_n),
                    "parabola": p.coef,
                }  # fmt: skip
                for p in self.profiles
            ],
            "exponent_n": f(self.exponent_n),
            "exponent_n_ci95": list(self.exponent_n_ci) if self.exponent_n_ci else None,
            "exponent_d": f(self.exponent_d),
            "exponent_d_ci95": list(self.exponent_d_ci) if self.exponent_d_ci else None,
            "n_boot": self.n_boot,
            "n_boot_ok": self.n_boot_ok,
            "underdetermined": self.underdetermined,
            "reason": self.reason,
            "interval": self.interval,
            "notes": self.notes,
        }


def parabola_minimum(log_n: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares parabola in log N and the log N at its minimum (NaN if it does not open upwards)."""
    coef = np.polyfit(log_n, loss, 2)
    return coef, (float(-coef[1] / (2 * coef[0])) if coef[0] > 0 else math.nan)


def choose_budgets(
    sizes: dict[float, tuple[np.ndarray, np.ndarray]], n_budgets: int = 5, min_sizes: int = MIN_SIZES
) -> list[float]:
    """Log-spaced budgets inside the compute range that >= ``min_sizes`` sizes cover (each size covers
    [its smallest, its largest] measured compute)."""
    spans = [(c.min(), c.max()) for c, _ in sizes.values() if len(c) >= 2]
    if len(spans) < min_sizes:
        return []
    grid = np.geomspace(min(s[0] for s in spans), max(s[1] for s in spans), 200)
    covered = grid[[sum(lo <= c <= hi for lo, hi in spans) >= min_sizes for c in grid]]
    if len(covered) == 0:
        return []
    return [float(c) for c in np.geomspace(covered.min(), covered.max(), n_budgets)]


def _power_exponent(compute: np.ndarray, value: np.ndarray) -> float:
    return float(np.polyfit(np.log(compute), np.log(value), 1)[0])


def isoflop(
    n: Sequence[float],
    tokens: Sequence[float],
    loss: Sequence[float],
    flops_per_token: Sequence[float],
    n_budgets: int = 5,
    n_boot: int = 200,
    rng: np.random.Generator | None = None,
    tick: Callable[[], None] = lambda: None,
) -> IsoFlopResult:
    """IsoFLOP analysis of one architecture's points (size N, tokens D, mean final loss, FLOPs per token of N)."""
    n, tokens, loss, fpt = (np.asarray(v, dtype=float) for v in (n, tokens, loss, flops_per_token))
    sizes: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for size in np.unique(n):
        sel = n == size
        order = np.argsort(tokens[sel])
        sizes[float(size)] = ((fpt[sel] * tokens[sel])[order], loss[sel][order])
    budgets = choose_budgets(sizes, n_budgets)
    size_fpt = {float(s): float(fpt[n == s][0]) for s in sizes}
    if len(budgets) < MIN_BUDGETS:
        counts = sorted((len(c) for c, _ in sizes.values()), reverse=True)
        return IsoFlopResult([], underdetermined=True, reason=(
            f"no {MIN_BUDGETS} compute budgets reached by >= {MIN_SIZES} sizes each ({len(sizes)} sizes with "
            f"{counts} budgets; the sizes' compute ranges overlap too little)"))  # fmt: skip
    slices = []
    for c in budgets:
        ok = [s for s, (cs, _) in sizes.items() if len(cs) >= 2 and cs.min() <= c <= cs.max()]
        ln = np.log(ok)
        ll = np.array([np.exp(np.interp(math.log(c), np.log(sizes[s][0]), np.log(sizes[s][1]))) for s in ok])
        slices.append((c, ln, ll))
    ln_all, lf_all = np.log(list(size_fpt)), np.log(list(size_fpt.values()))

    def solve(data: list[tuple[float, np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
        return [parabola_minimum(ln, ll) for _, ln, ll in data]

    def d_of(c: float, log_n_opt: float) -> float:
        return c / math.exp(np.interp(log_n_opt, ln_all, lf_all, left=math.nan, right=math.nan))

    profiles = []
    for (c, ln, ll), (coef, m) in zip(slices, solve(slices), strict=True):
        inside = math.isfinite(m) and ln.min() <= m <= ln.max()
        profiles.append(Profile(c, ln.tolist(), ll.tolist(), coef.tolist(), math.exp(m) if math.isfinite(m)
                                else math.nan, d_of(c, m) if inside else math.nan, inside))  # fmt: skip
    result = IsoFlopResult(profiles)
    good = [p for p in profiles if p.inside]
    if len(good) < 3:
        result.underdetermined = True
        result.reason = f"{len(good)} of {len(profiles)} budgets have their minimum inside the measured sizes"
        return result
    cs = np.array([p.compute for p in good])
    result.exponent_n = _power_exponent(cs, np.array([p.n_opt for p in good]))
    result.exponent_d = _power_exponent(cs, np.array([p.d_opt for p in good]))
    result.notes.append(
        f"{len(good)} of {len(profiles)} budgets have an interior minimum and enter the exponents"
    )
    if n_boot <= 0:
        return result
    rng = np.random.default_rng(0) if rng is None else rng
    fitted = [np.polyval(coef, ln) for (_, ln, _), (coef, _) in zip(slices, solve(slices), strict=True)]
    rows, per_budget = [], []
    for _ in range(n_boot):
        data = []
        for (c, ln, ll), f in zip(slices, fitted, strict=True):
            resid = (ll - f) * math.sqrt(len(ll) / max(len(ll) - 3, 1))
            data.append((c, ln, f + resid[rng.integers(0, len(ll), len(ll))]))
        mins = [m for _, m in solve(data)]
        keep = [i for i, p in enumerate(profiles) if p.inside and math.isfinite(mins[i])]
        per_budget.append([math.exp(m) if math.isfinite(m) else math.nan for m in mins])
        if len(keep) >= 3:
            c_k = np.array([profiles[i].compute for i in keep])
            n_k = np.exp([mins[i] for i in keep])
            d_k = np.array([d_of(profiles[i].compute, mins[i]) for i in keep])
            if np.all(np.isfinite(d_k)):
                rows.append([_power_exponent(c_k, n_k), _power_exponent(c_k, d_k)])
        tick()
    result.n_boot, result.n_boot_ok = n_boot, len(rows)
    if rows:
        lo, hi = percentile_interval(np.array(rows))
        result.exponent_n_ci, result.exponent_d_ci = (
            (float(lo[0]), float(hi[0])),
            (float(lo[1]), float(hi[1])),
        )
    table = np.array(per_budget)
    for i, p in enumerate(profiles):
        col = table[:, i][np.isfinite(table[:, i])]
        if len(col) >= 0.5 * n_boot:
            p.n_opt_ci = tuple(float(v) for v in np.exp(np.percentile(np.log(col), [2.5, 97.5])))
    return result
