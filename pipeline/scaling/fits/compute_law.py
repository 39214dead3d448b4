"""L(C) fitted to the compute frontier of a set of points (each a list of seed runs), on one compute axis.

The frontier is the lower envelope of every validation point of every run (`fits.frontier`), seeds averaged per
point (`compute_axes.mean_curve`); a resample of points refits the frontier of the drawn points, so the
bootstrap (`bootstrap.bootstrap_groups`) sees how much the envelope depends on which runs were made.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.scaling.fits.compute_axes import flops_per_token, mean_curve
from pipeline.scaling.fits.frontier import frontier
from pipeline.scaling.fits.laws import FitResult, fit_power_law
from pipeline.scaling.fits.points import Point
from pipeline.scaling.records.run_record import RunRecord


def lc_fitter(
    points: list[Point], axis: str, with_e: bool
) -> tuple[Callable[[list[np.ndarray]], FitResult], list[np.ndarray], list[RunRecord], list[float | None]]:
    """(fit on a draw of run-index groups, the groups (one per point), the runs, their FLOPs per token on ``axis``)."""
    runs = [r for p in points for r in p.runs]
    fpt = [flops_per_token(r, axis) for r in runs]
    groups, i = [], 0
    for p in points:
        groups.append(np.arange(i, i + len(p.runs)))
        i += len(p.runs)

    def fit_on(draw: list[np.ndarray]) -> FitResult:
        curves = [(runs[g[0]].run, fpt[g[0]], mean_curve([runs[j] for j in g])) for g in draw]
        front = frontier(curves)
        return fit_power_law([q.compute for q in front], [q.loss for q in front], with_e=with_e)

    return fit_on, groups, runs, fpt


def lc_fit_points(points: list[list[RunRecord]], axis: str = "model") -> FitResult:
    """L(C) (no E) on the frontier of the given points (each a list of seed runs): the paired comparison's fitter."""
    curves = [(runs[0].run, flops_per_token(runs[0], axis), mean_curve(runs)) for runs in points]
    front = frontier(curves)
    return fit_power_law([q.compute for q in front], [q.loss for q in front])
