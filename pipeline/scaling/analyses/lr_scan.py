"""Each size's best learning rate, and the scan it was chosen from.

Where a size was trained at several learning rates, the fits use that size's best rate only, as Kaplan et al.
(2020) and Hoffmann et al. (2022) tune theirs; the scan itself goes into the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.scaling.fits.capacity_law import best_over_rates
from pipeline.scaling.fits.points import record_lr
from pipeline.scaling.records.run_record import RunRecord


@dataclass
class LrScan:
    """Per size: mean final loss at each rate (at the size's largest budget scanned with >= 2 rates)."""

    arch: str
    tokens: dict[int, int]  # size -> the budget the rates were compared at
    loss: dict[int, dict[float, tuple[float, int]]]  # size -> lr -> (mean loss over seeds, seeds)
    best: dict[int, float]  # size -> best lr
    # size -> "low" / "high" where the best rate is the scan's smallest / largest and beats its neighbour: the
    # optimum may lie outside the scan (a hint, not a tuned rate); None where it is interior
    at_edge: dict[int, str | None] = field(default_factory=dict)

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
        scan.at_edge[n] = best_over_rates({lr: -v for lr, v in key.items()}).at_edge if len(key) > 1 else None
        scan.tokens[n], scan.loss[n], scan.best[n] = at, dict(sorted(table.items())), best
        kept += [r for r in runs if record_lr(r) == best]
    return kept, scan
