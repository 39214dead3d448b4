"""Seeds and learning rates: runs grouped into points (one per size, budget and rate), and each size's best rate.

A point is every seed of one (non-embedding size, token budget, learning rate); the fits use the mean over its
seeds and the report its spread, and the bootstrap resamples the seeds inside a point (``intervals.two_stage_draw``).
Where a size was trained at several learning rates, the fits use that size's best rate only, as Kaplan et al.
(2020) and Hoffmann et al. (2022) tune theirs; the scan itself goes into the report.

Records written before seeds and rates were recorded carry neither: the rate comes from ``config.optim.lr`` and
a missing seed counts as one seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.scaling.records import RunRecord


def record_lr(r: RunRecord) -> float | None:
    if r.lr is not None:
        return r.lr
    lr = r.config.get("optim", {}).get("lr") if isinstance(r.config.get("optim"), dict) else None
    return float(lr) if isinstance(lr, int | float) and not isinstance(lr, bool) else None


@dataclass
class Point:
    """Every seed of one (architecture, size, budget, learning rate)."""

    arch: str
    n: int  # non-embedding parameters
    tokens: int
    lr: float | None
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def losses(self) -> np.ndarray:
        return np.array([r.final_valid_loss for r in self.runs])

    @property
    def loss(self) -> float:
        """Mean final valid loss over the seeds."""
        return float(self.losses.mean())

    @property
    def spread(self) -> float:
        """Sample standard deviation over seeds (NaN with one seed)."""
        return float(self.losses.std(ddof=1)) if len(self.runs) > 1 else math.nan

    @property
    def best_loss(self) -> float:
        return float(np.mean([r.best_valid_loss for r in self.runs]))

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def compute(self) -> float:
        return float(np.mean([r.compute for r in self.runs]))


BUDGET_TOLERANCE = 0.05  # seeds of one budget train a few per mille apart; a grid's budgets are >= 1.4x apart


def snap_budgets(records: Sequence[RunRecord], tolerance: float = BUDGET_TOLERANCE) -> list[RunRecord]:
    """Records whose trained tokens differ only by rounding, made one budget: across the sweep, tokens within
    ``tolerance`` of a cluster's smallest get the cluster's median run (compute keeps each run's own).

    Why: a budget becomes whole steps of the run's own loader, whose mean batch differs by seed, so seeds 1, 2
    and 3 of one 250k budget train e.g. 252,666 / 252,148 / 253,120 tokens; grouped on exact tokens every seed
    would be a point of its own and no point would have seeds to average. Across the sweep, not per size, so one
    budget is one column of the report's tables for every size."""
    clusters: list[list[int]] = []
    for t in sorted(r.tokens for r in records):
        if clusters and t <= clusters[-1][0] * (1 + tolerance):
            clusters[-1].append(t)
        else:
            clusters.append([t])
    budget = {t: int(np.median(c)) for c in clusters for t in c}
    return [
        r if budget[r.tokens] == r.tokens else dataclasses.replace(r, tokens=budget[r.tokens])
        for r in records
    ]


def group_points(records: Sequence[RunRecord]) -> list[Point]:
    """Records grouped by (arch, size, tokens, lr), ordered by arch, size, tokens, lr."""
    points: dict[tuple, Point] = {}
    for r in records:
        key = (r.arch, r.non_embedding_params, r.tokens, record_lr(r))
        points.setdefault(key, Point(*key)).runs.append(r)
    return [points[k] for k in sorted(points, key=lambda k: (k[0], k[1], k[2], k[3] or 0.0))]


@dataclass
class LrScan:
    """Per size: mean final loss at each rate (at the size's largest budget scanned with >= 2 rates)."""

    arch: str
    tokens: dict[int, int]  # size -> the budget the rates were compared at
    loss: dict[int, dict[float, tuple[float, int]]]  # size -> lr -> (mean loss over seeds, seeds)
    best: dict[int, float]  # size -> best lr

    @property
    def scanned(self) -> bool:
        return any(len(v) > 1 for v in self.loss.values())


def select_best_lr(records: Sequence[RunRecord]) -> tuple[list[RunRecord], LrScan]:
    """Keep, per size, only the runs at its best learning rate; return them and the scan.

    The best rate of a size is the one with the lowest mean final loss at the largest budget where that size ran
    >= 2 rates (the least data-limited comparison), over the seeds every rate ran there (so a rate replicated on
    more seeds, as `replicate_best_lr` grids do, is compared like for like; all seeds when they share none). A size with one rate keeps all its runs. Runs without a known
    rate form their own group (rate None) and are kept when the size has no other."""
    arch = records[0].arch if records else ""
    by_size: dict[int, list[RunRecord]] = {}
    for r in records:
        by_size.setdefault(r.non_embedding_params, []).append(r)
    kept, scan = [], LrScan(arch, {}, {}, {})
    for n, runs in sorted(by_size.items()):
        rates = {record_lr(r) for r in runs}
        if len(rates) < 2:
            kept += runs
            continue
        budgets = [
            t for t in {r.tokens for r in runs} if len({record_lr(r) for r in runs if r.tokens == t}) > 1
        ]
        at = max(budgets) if budgets else max(r.tokens for r in runs)
        table: dict[float, tuple[float, int]] = {}
        at_budget = {lr: {r.seed: r.final_valid_loss for r in runs if r.tokens == at and record_lr(r) == lr}
                     for lr in rates if lr is not None}  # fmt: skip
        for lr, by_seed in at_budget.items():
            if by_seed:
                table[lr] = (float(np.mean(list(by_seed.values()))), len(by_seed))
        sets = [set(v) for v in at_budget.values() if v]
        matched = set.intersection(*sets) if sets else set()
        # where some rates have more seeds (`replicate_best_lr`), the choice compares the seeds all rates share
        key = {lr: float(np.mean([v[s] for s in matched])) if matched else table[lr][0]
               for lr, v in at_budget.items() if v}  # fmt: skip
        best = min(key, key=key.__getitem__)
        scan.tokens[n], scan.loss[n], scan.best[n] = at, dict(sorted(table.items())), best
        kept += [r for r in runs if record_lr(r) == best]
    return kept, scan
