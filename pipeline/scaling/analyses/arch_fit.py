"""Every law of one architecture, fitted: L(N) at fixed D, L(C) on three compute axes, the Chinchilla surface,
L(N) from the surface, IsoFLOP profiles.

What is fitted to what (chosen here once, stated in the report):
- Runs whose final loss is >= the unigram entropy of the validation targets learned nothing beyond token
  frequencies (``learned_nothing.py``): left out of every fit and counted. Where a size was trained at several
  learning rates, only its best rate's runs are fitted (``lr_scan.py``). Seeds of one (size, budget, rate) form a
  point: fits use the mean over seeds, the bootstrap resamples points and then seeds inside each.
- L(N) at fixed D (``L_N``, ``L_N_E``): per size, its largest-budget point (``best_valid_loss``, every seed run),
  least squares on log loss, studentized residual bootstrap. At a fixed D this mostly measures the data floor, so
  it is labelled fixed-D; the identified L(N) is ``L_N_surface``, E + A/N^alpha from the Chinchilla surface.
- L(C) on three compute axes (``fits.compute_axes``: model FLOPs, without the output projection, 6N): the lower
  envelope of every validation point of every run (final point only for records without a curve); BCa over points.
- L(N, D): every point, D = target tokens trained on (repeats included), loss = mean ``final_valid_loss``.
- IsoFLOP profiles (``fits.isoflop``) on the model-FLOPs axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.scaling.analyses.learned_nothing import fitted_runs
from pipeline.scaling.analyses.lr_scan import LrScan
from pipeline.scaling.fits.bootstrap import (
    bootstrap_groups,
    fit_chinchilla_bootstrap,
    fit_power_law_bootstrap,
)
from pipeline.scaling.fits.compute_axes import COMPUTE_AXES, mean_curve
from pipeline.scaling.fits.compute_law import lc_fitter
from pipeline.scaling.fits.frontier import FrontierPoint, frontier
from pipeline.scaling.fits.intervals import fit_rng
from pipeline.scaling.fits.isoflop import IsoFlopResult, isoflop
from pipeline.scaling.fits.laws import FitResult
from pipeline.scaling.fits.points import Point, group_points
from pipeline.scaling.fits.progress import ProgressLines
from pipeline.scaling.fits.surface_law import surface_law_n
from pipeline.scaling.records.run_record import RunRecord

LAWS_PER_ARCH = 10  # bootstrap loops per architecture (for the progress count)


def _no_tick() -> None:
    return None


@dataclass(frozen=True)
class ArchFit:
    arch: str
    records: list[RunRecord]  # the runs the fits use: learned something, at their size's best learning rate
    fits: dict[str, FitResult]  # "L_N", "L_N_E" (fixed D), "L_N_surface", "L_C[_axis][_E]", "chinchilla"
    frontier: list[FrontierPoint]  # model-FLOPs frontier (``frontiers["model"]``)
    all_records: list[RunRecord] = field(default_factory=list)  # every finished run of the architecture
    learned_nothing: list[RunRecord] = field(default_factory=list)
    other_lr: list[RunRecord] = field(default_factory=list)  # runs at a size's worse learning rates
    entropy_unknown: int = 0  # runs whose unigram entropy is not known (not checked)
    lr_scan: LrScan | None = None
    frontiers: dict[str, list[FrontierPoint]] = field(default_factory=dict)
    isoflop: IsoFlopResult | None = None

    @property
    def points(self) -> list[Point]:
        return group_points(self.records)

    @property
    def sizes(self) -> list[int]:
        return sorted({r.non_embedding_params for r in self.records})

    @property
    def compute_range(self) -> tuple[float, float]:
        c = [r.compute for r in self.records]
        return min(c), max(c)


def largest_budget_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Per non-embedding size, its run with the most tokens (ties: the lower loss), ordered by size."""
    top: dict[int, RunRecord] = {}
    for r in records:
        old = top.get(r.non_embedding_params)
        if old is None or (r.tokens, -r.best_valid_loss) > (old.tokens, -old.best_valid_loss):
            top[r.non_embedding_params] = r
    return [top[n] for n in sorted(top)]


def largest_budget_points(records: Sequence[RunRecord]) -> list[Point]:
    """Per non-embedding size, its point (all seeds) with the most tokens, ordered by size."""
    top: dict[int, Point] = {}
    for p in group_points(records):
        if p.n not in top or (p.tokens, -p.best_loss) > (top[p.n].tokens, -top[p.n].best_loss):
            top[p.n] = p
    return [top[n] for n in sorted(top)]


def points_by_size(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(N, mean best_valid_loss over seeds) of each size's largest-budget point: what L(N) at fixed D describes."""
    pts = largest_budget_points(records)
    return np.array([p.n for p in pts], dtype=float), np.array([p.best_loss for p in pts])


def _compute_fits(
    arch: str, points: list[Point], n_boot: int, seed: int, progress: ProgressLines | None
) -> tuple[dict[str, FitResult], dict[str, list[FrontierPoint]]]:
    """L(C) with and without E on every compute axis, and each axis's frontier."""
    tick = progress.tick if progress else _no_tick
    fits: dict[str, FitResult] = {}
    frontiers: dict[str, list[FrontierPoint]] = {}
    for axis in COMPUTE_AXES:
        suffix = "" if axis == "model" else f"_{axis}"
        _, groups, runs, fpt = lc_fitter(points, axis, False)
        if any(f is None for f in fpt):
            why = f"compute axis {axis!r} unknown for some runs (no d_model/vocab_size in their config)"
            for key in (f"L_C{suffix}", f"L_C{suffix}_E"):
                nan = {"alpha": math.nan, "x_c": math.nan}
                fits[key] = FitResult("power_law", nan, 0, 2, underdetermined=True, reason=why)
                if progress:
                    progress.skip(n_boot)  # no resamples drawn: the total shrinks, the count does not tick
            continue
        frontiers[axis] = frontier(
            [(runs[g[0]].run, fpt[g[0]], mean_curve([runs[j] for j in g])) for g in groups]
        )
        for with_e in (False, True):
            key = f"L_C{suffix}" + ("_E" if with_e else "")
            if progress:
                progress.set_stage(f"{arch} {key}")
            fit_on = lc_fitter(points, axis, with_e)[0]
            fits[key] = bootstrap_groups(fit_on, groups, n_boot, fit_rng(seed, arch, key), tick)
            fits[key].note = f"C = {COMPUTE_AXES[axis]}; frontier of every validation point"
    return fits, frontiers


def fit_arch(
    records: list[RunRecord],
    n_boot: int = 400,
    seed: int = 0,
    n_starts: int | None = 64,
    unigram_entropy: float | None = None,
    progress: ProgressLines | None = None,
) -> ArchFit:
    """All fits for one architecture; each law draws its resamples from its own (seed, arch, law) stream."""
    arch = records[0].arch
    tick = progress.tick if progress else _no_tick
    stage = progress.set_stage if progress else (lambda s: None)
    records, kept, nothing, other_lr, unknown, scan = fitted_runs(records, unigram_entropy)
    runs = {"all_records": records, "learned_nothing": nothing, "other_lr": other_lr, "entropy_unknown": unknown,
            "lr_scan": scan}  # fmt: skip
    if not kept:
        if progress:
            progress.skip(LAWS_PER_ARCH * n_boot)
        return ArchFit(arch=arch, records=[], fits={}, frontier=[], **runs)
    top = largest_budget_points(kept)
    x = np.array([p.n for p in top for _ in p.runs], dtype=float)
    y = np.array([r.best_valid_loss for p in top for r in p.runs])
    fixed = (
        f"fixed D: each size's largest budget ({', '.join(sorted({f'{p.tokens:,}' for p in top}))} tokens)"
    )
    fits: dict[str, FitResult] = {}
    for key, with_e in (("L_N", False), ("L_N_E", True)):
        stage(f"{arch} {key}")
        fits[key] = fit_power_law_bootstrap(x, y, with_e, n_boot, rng=fit_rng(seed, arch, key), tick=tick)
        fits[key].note = fixed
    points = group_points(kept)
    compute_fits, frontiers = _compute_fits(arch, points, n_boot, seed, progress)
    fits |= compute_fits
    stage(f"{arch} chinchilla")
    runs_nd = [r for p in points for r in p.runs]
    groups = [np.array([runs_nd.index(r) for r in p.runs]) for p in points]
    nd_loss = (
        [r.non_embedding_params for r in runs_nd],
        [r.tokens for r in runs_nd],
        [r.final_valid_loss for r in runs_nd],
    )
    fits["chinchilla"] = fit_chinchilla_bootstrap(*nd_loss, n_boot=n_boot, n_starts=n_starts, groups=groups,
                                                  rng=fit_rng(seed, arch, "chinchilla"), tick=tick)  # fmt: skip
    fits["L_N_surface"] = surface_law_n(fits["chinchilla"])
    stage(f"{arch} isoflop")
    iso = isoflop(
        [p.n for p in points],
        [p.tokens for p in points],
        [p.loss for p in points],
        [p.runs[0].flops_per_token for p in points],
        n_boot=n_boot,
        rng=fit_rng(seed, arch, "isoflop"),
        tick=tick,
    )
    if progress:
        progress.skip(n_boot - iso.n_boot)  # an undetermined profile draws no resamples
    return ArchFit(arch=arch, records=kept, fits=fits, frontier=frontiers.get("model", []), frontiers=frontiers,
                   isoflop=iso, **runs)  # fmt: skip
