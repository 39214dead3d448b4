"""`pipeline scaling coverage SWEEP A B`: does the report's L_A / L_B interval cover the truth as often as it says?

The report compares two architectures by the ratio of their fitted L(C) frontier laws at the largest compute both
reached, with a 95 % interval from resampling each side independently (points, then seeds inside points). The unit
tests check the power-law intervals on a synthetic 5 x 3 grid; this checks the ratio on the sweep's own design: the
same kept runs (best rate, learned something), sizes, budgets, validation points and seed layout. Each replicate
draws new losses from a known truth, refits both frontiers with the report's fitter and bootstrap, and asks whether
the interval holds the truth's ratio. A parametric bootstrap of the study, written by hand: no library runs a
sweep's fitting pipeline on simulated sweeps.

- Truth: each architecture's Chinchilla surface L(N, D) fitted to its kept final losses, evaluated at every
  validation point of every run. The estimand is the ratio the same fitter gives on noise-free data (the
  pseudo-true value: a power law fitted to a frontier is not the surface, and coverage is of what it estimates).
- Noise: one multiplicative offset per run, drawn from the sweep's own seed deviations (log loss minus its point's
  mean, rescaled by sqrt(k / (k - 1)), over points with >= 2 seeds), so heavy tails stay heavy. The whole curve of
  a run moves together, as a run that leaves the unigram plateau late sits high at every later validation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.scaling.analyses.learned_nothing import fitted_runs
from pipeline.scaling.fits.bootstrap import bootstrap_groups
from pipeline.scaling.fits.compute_law import lc_fitter
from pipeline.scaling.fits.crossing import compare_curves, comparison_window
from pipeline.scaling.fits.intervals import fit_rng
from pipeline.scaling.fits.laws import FitResult, fit_chinchilla
from pipeline.scaling.fits.points import group_points
from pipeline.scaling.records.run_record import RunRecord

LEVEL = 0.95


def kept_runs(
    records: Sequence[RunRecord], arch: str, unigram_entropy: float | None = None
) -> list[RunRecord]:
    """The runs the report fits for ``arch``: each size's best rate, without the runs that learned nothing."""
    own = [r for r in records if r.arch == arch]
    if not own:
        raise ValueError(f"no records of arch {arch!r}; the sweep has {sorted({r.arch for r in records})}")
    kept = fitted_runs(own, unigram_entropy)[1]  # the report's own rule (``analyses.arch_fit.fit_arch``)
    if not kept:
        raise ValueError(f"arch {arch!r}: every run at its best rate learned nothing; nothing to fit")
    return kept


def seed_deviations(kept: Sequence[RunRecord]) -> np.ndarray:
    """Each run's log final loss minus its point's mean, over points with >= 2 seeds (unbiased scale)."""
    out = []
    for p in group_points(kept):
        if len(p.runs) >= 2:
            logs = np.log(p.losses)
            out += list((logs - logs.mean()) * math.sqrt(len(logs) / (len(logs) - 1)))
    if not out:
        raise ValueError(
            f"arch {kept[0].arch!r}: no point has 2 or more seeds, so there is no seed noise to draw"
        )
    return np.array(out)


def _with_losses(r: RunRecord, truth: FitResult, offset: float) -> RunRecord:
    """``r`` with every validation loss (and the final one) replaced by the truth times exp(offset)."""
    scale = math.exp(offset)

    def loss(tokens: float) -> float:
        return float(truth.predict(float(r.non_embedding_params), float(tokens))) * scale

    curve = [{**p, "loss": loss(p["tokens"])} for p in r.valid_curve]
    final = loss(r.tokens)
    return dataclasses.replace(r, valid_curve=curve, final_valid_loss=final, best_valid_loss=final)


def frontier_fit(runs: Sequence[RunRecord], n_boot: int, rng: np.random.Generator | None) -> FitResult:
    """The report's L(C) frontier law on ``runs`` (with its bootstrap interval when ``n_boot`` > 0)."""
    fit_on, groups, _, _ = lc_fitter(group_points(runs), "model", False)
    return bootstrap_groups(fit_on, groups, n_boot, rng) if n_boot > 0 else fit_on(list(groups))


def _simulated_fit(
    kept: Sequence[RunRecord],
    truth: FitResult,
    offsets: np.ndarray,
    n_boot: int,
    rng: np.random.Generator | None,
) -> FitResult:
    return frontier_fit([_with_losses(r, truth, o) for r, o in zip(kept, offsets, strict=True)], n_boot, rng)


def bias_check(observed: float, pseudo_true: float, simulated: Sequence[float]) -> dict[str, float]:
    """The estimator's bias on simulated sweeps (mean minus pseudo-true) and the observed estimate less it.

    A frontier is a lower envelope: run noise that pushes a run down puts it on the frontier, noise that pushes it up
    hides it, so its exponent comes out too steep. Subtracting the simulated bias is the parametric bootstrap's
    bias correction; it holds only as far as the simulated truth (a smooth surface) is like the real one."""
    values = np.asarray(simulated, dtype=float)
    mean = float(values.mean()) if len(values) else math.nan
    sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    bias = mean - pseudo_true
    return {
        "observed": observed, "pseudo_true": pseudo_true, "simulated_mean": mean, "simulated_sd": sd,
        "bias": bias, "bias_in_sd": bias / sd if sd > 0 else math.nan, "bias_corrected": observed - bias,
    }  # fmt: skip


def _covers(ci: Any, value: float) -> bool | None:
    if ci is None or not all(math.isfinite(v) for v in ci):
        return None
    return bool(ci[0] <= value <= ci[1])


def coverage(
    records: Sequence[RunRecord],
    arch_a: str,
    arch_b: str,
    reps: int = 200,
    n_boot: int = 200,
    seed: int = 0,
    unigram_entropy: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Coverage of the L_a / L_b interval (and of each side's L(C) alpha interval) over ``reps`` simulated sweeps."""
    kept = {a: kept_runs(records, a, unigram_entropy) for a in (arch_a, arch_b)}
    truth = {a: fit_chinchilla([r.non_embedding_params for r in k], [r.tokens for r in k],
                               [r.final_valid_loss for r in k]) for a, k in kept.items()}  # fmt: skip
    devs = {a: seed_deviations(k) for a, k in kept.items()}
    at, search = comparison_window(
        *[(min(r.compute for r in k), max(r.compute for r in k)) for k in kept.values()]
    )
    exact = {a: _simulated_fit(kept[a], truth[a], np.zeros(len(kept[a])), 0, None)
             for a in kept}  # fmt: skip
    true_ratio = float(exact[arch_a].predict(at) / exact[arch_b].predict(at))
    observed = {a: frontier_fit(k, 0, None) for a, k in kept.items()}  # the report's point estimates
    observed_ratio = float(observed[arch_a].predict(at) / observed[arch_b].predict(at))
    ratios: list[float] = []  # the point estimate of every replicate
    rng = np.random.default_rng(seed)
    hits: dict[str, list[bool]] = {"ratio": [], f"alpha_{arch_a}": [], f"alpha_{arch_b}": []}
    widths, undefined, start = [], 0, time.monotonic()
    alphas: dict[str, list[tuple[float, float]]] = {a: [] for a in kept}  # (estimate, CI width) per replicate
    for i in range(reps):
        fits = {}
        for a in kept:
            offsets = rng.choice(devs[a], size=len(kept[a]), replace=True)
            fits[a] = _simulated_fit(kept[a], truth[a], offsets, n_boot, fit_rng(seed, f"rep{i}", a))
        cmp = compare_curves(arch_a, fits[arch_a], arch_b, fits[arch_b], at, search)
        ratios.append(cmp.loss_ratio)
        hit = _covers(cmp.loss_ratio_ci, true_ratio)
        if hit is None:
            undefined += 1
        else:
            hits["ratio"].append(hit)
            widths.append(cmp.loss_ratio_ci[1] - cmp.loss_ratio_ci[0])
        for a in kept:
            ci = fits[a].ci.get("alpha") if fits[a].ci else None
            h = _covers(ci, exact[a].params["alpha"])
            if h is not None:
                hits[f"alpha_{a}"].append(h)
                alphas[a].append((fits[a].params["alpha"], ci[1] - ci[0]))
        if progress is not None:
            progress(i + 1, reps, time.monotonic() - start)
    summary = {k: _rate(v) for k, v in hits.items()}
    return {
        "arch_a": arch_a, "arch_b": arch_b, "nominal": LEVEL, "reps": reps, "n_boot": n_boot, "seed": seed,
        "at_compute": at, "true_ratio": true_ratio, "coverage": summary,
        "ratio_ci_mean_width": float(np.mean(widths)) if widths else math.nan, "ratio_undefined_reps": undefined,
        "kept_runs": {a: len(k) for a, k in kept.items()},
        "seed_deviations": {a: {"n": len(d), "sd": float(d.std(ddof=1)), "max_abs": float(np.abs(d).max())}
                            for a, d in devs.items()},
        "truth": {a: t.params for a, t in truth.items()},
        "pseudo_true_alpha": {a: e.params["alpha"] for a, e in exact.items()},
        # bias (mean - pseudo-true) against spread (sd) tells an off-centre interval from a narrow one
        "alpha_estimates": {a: {**bias_check(observed[a].params["alpha"], exact[a].params["alpha"], [e for e, _ in v]),
                                "ci_mean_width": float(np.mean([w for _, w in v]))} for a, v in alphas.items() if v},
        "ratio_estimates": bias_check(observed_ratio, true_ratio, ratios),
        "elapsed_s": round(time.monotonic() - start, 1),
    }  # fmt: skip


def _rate(hits: list[bool]) -> dict[str, float]:
    n = len(hits)
    p = sum(hits) / n if n else math.nan
    return {"rate": p, "n": n, "binomial_se": math.sqrt(p * (1 - p) / n) if n else math.nan}
