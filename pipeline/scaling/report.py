"""Fit every architecture of a sweep (``fit.json``); ``report_markdown.py`` turns the fits into ``report.md`` and
``plots.py`` into PNGs.

What is fitted to what (chosen here once, stated in the report):
- L(N): per distinct non-embedding size, the ``best_valid_loss`` of its run with the most tokens (the least
  data-limited loss that size reached; Kaplan et al. 2020 fit converged/early-stopped loss). The bootstrap resamples
  these runs only: resampling all runs would swap a size's largest-budget run for a smaller-budget one and turn
  the spread of D into fake uncertainty in alpha_N.
- L(C): the run-level compute frontier of ``final_valid_loss`` (the loss a run actually ended at for its compute).
- L(N, D): every run, D = target tokens trained on (repeats included), loss = ``final_valid_loss``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.compare import Crossing, compare_curves, compute_frontier
from pipeline.scaling.fit import FitResult, bootstrap, fit_chinchilla_bootstrap, fit_power_law
from pipeline.scaling.plateau import Plateau, position_plateau
from pipeline.scaling.records import RunRecord, load_sweep, save_json_atomic

PLAN_FILE = "plan.json"  # `pipeline sweep` lists every run of the grid here
REFERENCE_ARCH = "transformer"  # the curve the recurrent architectures are compared against
# crossings are searched this factor beyond the measured compute range, and flagged if found there
EXTRAPOLATE = 10.0


@dataclass
class ArchFit:
    arch: str
    records: list[RunRecord]
    fits: dict[str, FitResult]  # "L_N", "L_N_E", "L_C", "L_C_E", "chinchilla"
    frontier: list[RunRecord]

    @property
    def sizes(self) -> list[int]:
        return sorted({r.non_embedding_params for r in self.records})

    @property
    def compute_range(self) -> tuple[float, float]:
        c = [r.compute for r in self.records]
        return min(c), max(c)


@dataclass
class SweepFit:
    sweep_dir: Path
    skipped: list[str]  # planned runs without a record (or, with no plan.json, run dirs without one)
    archs: dict[str, ArchFit]
    comparisons: list[Crossing] = field(default_factory=list)
    plateaus: dict[str, Plateau] = field(default_factory=dict)  # arch -> plateau against REFERENCE_ARCH
    settings: dict[str, Any] = field(default_factory=dict)
    planned: int | None = None  # runs in the sweep's plan.json (written by `pipeline sweep`), if there is one


def largest_budget_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Per non-embedding size, its run with the most tokens (ties: the lower loss), ordered by size."""
    top: dict[int, RunRecord] = {}
    for r in records:
        old = top.get(r.non_embedding_params)
        if old is None or (r.tokens, -r.best_valid_loss) > (old.tokens, -old.best_valid_loss):
            top[r.non_embedding_params] = r
    return [top[n] for n in sorted(top)]


def points_by_size(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(N, best_valid_loss) of each size's largest-budget run: the points L(N) is fitted to."""
    runs = largest_budget_runs(records)
    n = np.array([r.non_embedding_params for r in runs], dtype=float)
    return n, np.array([r.best_valid_loss for r in runs])


def _frontier(records: Sequence[RunRecord]) -> list[RunRecord]:
    idx = compute_frontier([r.compute for r in records], [r.final_valid_loss for r in records])
    return [records[i] for i in idx]


def fit_arch(
    records: list[RunRecord], n_boot: int = 400, seed: int = 0, n_starts: int | None = 64
) -> ArchFit:
    """All fits for one architecture; bootstraps resample runs (for L(C), then redo the frontier selection)."""
    by_size = largest_budget_runs(records)

    def law_n(with_e: bool):
        return lambda i: fit_power_law(*points_by_size([by_size[j] for j in i]), with_e=with_e)

    def law_c(with_e: bool):
        def fit_on(i: np.ndarray) -> FitResult:
            front = _frontier([records[j] for j in i])
            c, loss = [r.compute for r in front], [r.final_valid_loss for r in front]
            return fit_power_law(c, loss, with_e=with_e)

        return fit_on

    n = len(records)
    nd_loss = [[r.non_embedding_params for r in records], [r.tokens for r in records]]
    nd_loss.append([r.final_valid_loss for r in records])
    fits = {
        "L_N": bootstrap(law_n(False), len(by_size), n_boot, seed),
        "L_N_E": bootstrap(law_n(True), len(by_size), n_boot, seed),
        "L_C": bootstrap(law_c(False), n, n_boot, seed),
        "L_C_E": bootstrap(law_c(True), n, n_boot, seed),
        "chinchilla": fit_chinchilla_bootstrap(*nd_loss, n_boot=n_boot, seed=seed, n_starts=n_starts),
    }
    return ArchFit(records[0].arch, records, fits, _frontier(records))


def fit_sweep(sweep_dir: str | Path, n_boot: int = 400, seed: int = 0, n_starts: int | None = 64) -> SweepFit:
    loaded = load_sweep(sweep_dir)
    if not loaded.records:
        raise ValueError(f"{sweep_dir}: no finished runs (no */result.json); skipped: {loaded.skipped}")
    by_arch: dict[str, list[RunRecord]] = {}
    for r in loaded.records:
        by_arch.setdefault(r.arch, []).append(r)
    archs = {a: fit_arch(rs, n_boot, seed, n_starts) for a, rs in sorted(by_arch.items())}
    sweep = SweepFit(Path(sweep_dir), loaded.skipped, archs)
    plan = Path(sweep_dir) / PLAN_FILE
    if plan.is_file():  # the grid's full list: unfinished runs that never started count as missing too
        planned = [r["name"] for r in json.loads(plan.read_text())["runs"]]
        done = {r.run for r in loaded.records}
        sweep.planned, sweep.skipped = len(planned), [n for n in planned if n not in done]
    sweep.settings = {"n_boot": n_boot, "seed": seed, "n_starts": n_starts, "extrapolate": EXTRAPOLATE}
    names = sorted(archs, key=lambda a: (a == REFERENCE_ARCH, a))  # the reference goes second in each pair
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = archs[a].fits["L_C"], archs[b].fits["L_C"]
            if fa.underdetermined or fb.underdetermined:
                continue
            (lo_a, hi_a), (lo_b, hi_b) = archs[a].compute_range, archs[b].compute_range
            rng = (min(lo_a, lo_b) / EXTRAPOLATE, max(hi_a, hi_b) * EXTRAPOLATE)
            sweep.comparisons.append(compare_curves(a, fa, b, fb, min(hi_a, hi_b), rng))
    if REFERENCE_ARCH in archs:
        ref = min(archs[REFERENCE_ARCH].records, key=lambda r: r.final_valid_loss)
        for a in names:
            if a != REFERENCE_ARCH:
                best = min(archs[a].records, key=lambda r: r.final_valid_loss)
                sweep.plateaus[a] = position_plateau([best], [ref], sweep_dir=sweep_dir, seed=seed)
    return sweep


def sweep_to_dict(sweep: SweepFit) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sweep_dir": str(sweep.sweep_dir),
        "n_runs": sum(len(a.records) for a in sweep.archs.values()),
        "planned_runs": sweep.planned,
        "skipped_runs": sweep.skipped,
        "settings": sweep.settings,
        "archs": {},
        "comparisons": [c.to_dict() for c in sweep.comparisons],
        "plateaus": {a: {"vs": REFERENCE_ARCH, **p.to_dict()} for a, p in sweep.plateaus.items()},
    }
    for name, af in sweep.archs.items():
        out["archs"][name] = {
            "n_runs": len(af.records),
            "non_embedding_sizes": af.sizes,
            "token_budgets": sorted({r.tokens for r in af.records}),
            "max_epochs": max(r.epochs for r in af.records),
            "compute_range": list(af.compute_range),
            "fits": {k: f.to_dict() for k, f in af.fits.items()},
            "frontier": [
                {"run": r.run, "compute": r.compute, "loss": r.final_valid_loss} for r in af.frontier
            ],
        }
    return out


def run_fit(sweep_dir: str | Path, n_boot: int = 400, seed: int = 0) -> dict[str, Any]:
    """Fit a sweep and write ``SWEEP_DIR/fit.json``; returns the same JSON-serialisable dict."""
    out = sweep_to_dict(fit_sweep(sweep_dir, n_boot, seed))
    save_json_atomic(Path(sweep_dir) / "fit.json", out)
    return out
