"""Matched runs, compared without a fitted law: two architectures trained at the same size label and budget.

A grid names each run `<arch>-<size>-<budget>` (pipeline/sweep/grid.py) and every run of one budget sees the same
batches in the same order. Where two architectures share size labels (the ablations reuse the LSTM's: same d_model
and depth), the loss ratio of matched runs isolates the architectural change without any fitted law, and the ratio
restricted to early or late target positions says whether the change costs more far into the sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.scaling.records.run_record import RunRecord

EARLY = (0, 8)  # target positions [0, 8)
LATE_FROM = 32  # target positions >= 32 (the study's targets are at most 64 tokens)
BASELINES = ("transformer", "lstm")  # the denominator of a ratio, in this order of preference


@dataclass
class MatchedRunRatios:
    arch_a: str
    arch_b: str  # the baseline: ratios are L_a / L_b, > 1 means arch_a is worse
    tokens: int  # the largest budget both trained at
    sizes: list[str]
    final: list[float]  # per size: final valid loss ratio
    early: list[float]  # per size: ratio of the mean loss over EARLY positions
    late: list[float]  # per size: ratio of the mean loss over positions >= LATE_FROM


def _position_mean(record: RunRecord, lo: int, hi: int | None) -> float:
    values = [v for v in record.loss_by_position[lo:hi] if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def _ordered(a: str, b: str) -> tuple[str, str]:
    for base in BASELINES:
        if base in (a, b):
            return (b, a) if a == base else (a, b)
    return (a, b)


def matched_run_ratios(records: Sequence[RunRecord]) -> list[MatchedRunRatios]:
    """Every pair of architectures with runs of the same size label, at the largest budget they share."""
    by_arch: dict[str, dict[str, RunRecord]] = {}
    for r in records:
        if r.run.startswith(f"{r.arch}-"):
            by_arch.setdefault(r.arch, {})[r.run[len(r.arch) + 1 :]] = r
    names = sorted(by_arch)
    out = []
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            a, b = _ordered(x, y)
            shared = sorted(set(by_arch[a]) & set(by_arch[b]))
            matched = [
                (by_arch[a][k], by_arch[b][k]) for k in shared if by_arch[a][k].tokens == by_arch[b][k].tokens
            ]
            if not matched:
                continue
            tokens = max(ra.tokens for ra, _ in matched)
            top = sorted(((ra, rb) for ra, rb in matched if ra.tokens == tokens), key=lambda p: p[1].params)
            out.append(MatchedRunRatios(
                a, b, tokens, sizes=[ra.run[len(a) + 1 :].rsplit("-", 1)[0] for ra, _ in top],
                final=[ra.final_valid_loss / rb.final_valid_loss for ra, rb in top],
                early=[_position_mean(ra, *EARLY) / _position_mean(rb, *EARLY) for ra, rb in top],
                late=[_position_mean(ra, LATE_FROM, None) / _position_mean(rb, LATE_FROM, None) for ra, rb in top],
            ))  # fmt: skip
    return out
