"""Pairs versus distance: where an MQAR sweep varies L at fixed N, does failure track N or L?

A capacity-bound recurrence fails with the number of pairs it must hold, whatever the distance they are carried;
a model that forgets with time fails with L. Per (architecture, width), on the best-over-rates accuracy of every
(L, N) cell (mean over seeds at each cell's best rate):
- spread over L: for each N run at >= 2 lengths, max - min accuracy across L; averaged over those N;
- spread over N: for each L run at >= 2 pair counts, max - min across N; averaged over those L.
Verdict: "N" when the spread over N is more than twice the spread over L, "L" for the reverse, "both" otherwise;
"n/a" when the sweep does not vary both (only the spread it has is given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.scaling.fits.capacity_law import best_over_rates_table
from pipeline.scaling.fits.points import record_lr
from pipeline.scaling.records.run_record import RunRecord

RATIO = 2.0  # how much larger one spread must be than the other to name it


@dataclass(frozen=True)
class PairsVsDistance:
    arch: str
    d: int
    accuracy: dict[tuple[int, int], float]  # (L, N) -> best-over-rates accuracy
    spread_over_l: float  # NaN when no N was run at two lengths
    spread_over_n: float  # NaN when no L was run at two pair counts
    tracks: str  # "N", "L", "both" or "n/a"

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "d": self.d, "spread_over_L": _num(self.spread_over_l),
                "spread_over_N": _num(self.spread_over_n), "tracks": self.tracks,
                "accuracy": [{"L": length, "N": n, "accuracy": a} for (length, n), a in sorted(self.accuracy.items())]}  # fmt: skip


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _spread(acc: dict[tuple[int, int], float], along: int) -> float:
    """Mean over the fixed coordinate of max - min along the other (along=0: across L at fixed N)."""
    fixed = 1 - along
    groups: dict[int, list[float]] = {}
    for cell, a in acc.items():
        groups.setdefault(cell[fixed], []).append(a)
    ranges = [max(v) - min(v) for v in groups.values() if len(v) >= 2]
    return float(np.mean(ranges)) if ranges else math.nan


def verdict(spread_l: float, spread_n: float) -> str:
    if not (math.isfinite(spread_l) and math.isfinite(spread_n)):
        return "n/a"
    if spread_n > RATIO * spread_l:
        return "N"
    if spread_l > RATIO * spread_n:
        return "L"
    return "both"


def pairs_vs_distance(
    records: Sequence[RunRecord],
    width: Callable[[RunRecord], int],
    points: Callable[[RunRecord], list[tuple[int, int, tuple[int, int]]]],
) -> list[PairsVsDistance]:
    """One entry per (arch, width) whose MQAR runs hold some N at two lengths L; [] when none varies L. Seeds of
    one (cell, rate) are averaged; `width` and `points` read a record (`analyses.capacity`)."""
    rows: dict[tuple[str, int], list[tuple[tuple[int, int], float, float]]] = {}
    for r in records:
        for n, length, (k, total) in points(r):
            rows.setdefault((r.arch, width(r)), []).append(((length, n), record_lr(r) or 0.0, k / total))
    out = []
    for (arch, d), cells in sorted(rows.items()):
        lengths_per_n: dict[int, set[int]] = {}
        for (length, n), _, _ in cells:
            lengths_per_n.setdefault(n, set()).add(length)
        if all(len(v) < 2 for v in lengths_per_n.values()):
            continue
        acc = {cell: c.best_accuracy for cell, c in best_over_rates_table(cells).items()}
        spread_l, spread_n = _spread(acc, 0), _spread(acc, 1)
        out.append(PairsVsDistance(arch, d, acc, spread_l, spread_n, verdict(spread_l, spread_n)))
    return out
