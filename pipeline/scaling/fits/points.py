"""Points: runs grouped into one unit per (size, budget, learning rate), the unit every fit resamples.

A point is every seed of one (non-embedding size, token budget, learning rate); the fits use the mean over its
seeds and the report its spread, and the bootstrap resamples the seeds inside a point (``intervals.two_stage_draw``).
Which rate of a size the fits use is `analyses.lr_scan`.

Records written before seeds and rates were recorded carry neither: the rate comes from ``config.optim.lr`` and
a missing seed counts as one seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.scaling.records.run_record import RunRecord


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
