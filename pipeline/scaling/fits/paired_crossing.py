"""Paired comparison of two architectures' L(C) fits, where their runs are matched.

Two runs are matched when they have the same model shape (``d_model``, ``n_layers``), token budget, learning rate
and seed: in this pipeline every run of one budget sees the same batches in the same order, so matched runs share
their data noise. Resampling matched points with the same indices on both sides (a paired bootstrap) then cancels
that shared noise out of the loss ratio, which an independent bootstrap (``crossing.compare_curves``) cannot. The
result is declared ``design="paired"`` and says over how many matched points it was fitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.scaling.fits.crossing import Crossing, compare_curves
from pipeline.scaling.fits.intervals import two_stage_draw
from pipeline.scaling.fits.laws import FitResult
from pipeline.scaling.fits.points import Point, record_lr
from pipeline.scaling.records.run_record import RunRecord

MIN_MATCHED = 3


def _shape(r: RunRecord) -> tuple:
    model = r.config.get("model", {}) if isinstance(r.config.get("model"), dict) else {}
    return model.get("d_model"), model.get("n_layers")


def match_points(points_a: Sequence[Point], points_b: Sequence[Point]) -> list[tuple[list, list]]:
    """[(runs of a, runs of b)] per matched point, seeds paired by seed value (seed None pairs with None)."""

    def key(p: Point) -> tuple:
        return (*_shape(p.runs[0]), p.tokens, record_lr(p.runs[0]))

    b_by_key = {key(p): p for p in points_b if None not in _shape(p.runs[0])}
    out = []
    for pa in points_a:
        pb = b_by_key.get(key(pa)) if None not in _shape(pa.runs[0]) else None
        if pb is None:
            continue
        seeds_b = {r.seed: r for r in pb.runs}
        pairs = [(ra, seeds_b[ra.seed]) for ra in pa.runs if ra.seed in seeds_b]
        if pairs:
            out.append(([ra for ra, _ in pairs], [rb for _, rb in pairs]))
    return out


def paired_compare(
    arch_a: str,
    arch_b: str,
    matched: list[tuple[list, list]],
    fitter: Callable[[list[list[RunRecord]]], FitResult],
    at_compute: float,
    search_range: tuple[float, float],
    n_boot: int,
    rng: np.random.Generator,
) -> Crossing | None:
    """Crossing and loss ratio of the two L(C) fits on the matched points, both refitted on the same resampled
    points and seeds. ``fitter(points)`` fits one side from its list of per-point run lists. None when fewer than
    ``MIN_MATCHED`` points match or a full-data fit is underdetermined."""
    if len(matched) < MIN_MATCHED:
        return None
    fa, fb = fitter([a for a, _ in matched]), fitter([b for _, b in matched])
    if fa.underdetermined or fb.underdetermined:
        return None
    pairs = [(a[i], b[i]) for a, b in matched for i in range(len(a))]  # one entry per matched seed
    groups, start = [], 0
    for a, _ in matched:
        groups.append(np.arange(start, start + len(a)))
        start += len(a)
    rows_a, rows_b = [], []
    for _ in range(n_boot):
        draw = two_stage_draw(groups, rng)  # the same points and seeds for both sides
        ra = fitter([[pairs[i][0] for i in g] for g in draw])
        rb = fitter([[pairs[i][1] for i in g] for g in draw])
        if not (ra.underdetermined or rb.underdetermined):
            rows_a.append([ra.params[k] for k in fa.params])
            rows_b.append([rb.params[k] for k in fb.params])
    fa.samples, fb.samples = np.array(rows_a), np.array(rows_b)
    fa.n_boot = fb.n_boot = n_boot
    fa.n_boot_ok = fb.n_boot_ok = len(rows_a)
    out = compare_curves(arch_a, fa, arch_b, fb, at_compute, search_range)
    out.design = f"paired over {len(matched)} matched points"
    return out
