"""Gradient reach: how far back the training signal reaches in trained models, per architecture.

Runs trained with `train.grad_reach_every` leave ``<run>/grad_by_position.jsonl`` (`records.grad_reach_file`): at
each measurement, ||dL/dx_t|| per source and target position for the loss of each row's last target token. Per
architecture, its largest-compute run that measured it is kept, so the vanishing-gradient picture that the
cell-state residual fixes can sit next to the loss curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.sweep_dir import load_sweep


def first_over_last(norms: list[float]) -> float:
    """The norm at position 0 over the norm at the last position that has one: ~1 reaches, ~0 vanishes (NaN if
    there are fewer than two finite norms or the last is 0)."""
    finite = [v for v in norms if math.isfinite(v)]
    if len(finite) < 2 or finite[-1] <= 0:
        return math.nan
    return finite[0] / finite[-1]


@dataclass
class GradReach:
    """One run's measurements, in training order."""

    run: str
    arch: str
    compute: float
    steps: list[int]
    src: list[list[float]]  # per measurement, ||dL/dx_t|| at source position t
    tgt: list[list[float]]

    @staticmethod
    def min_over_max(norms: list[float]) -> float:
        """The weakest norm at any position over the strongest: the deepest the signal fades along the sequence."""
        finite = [v for v in norms if math.isfinite(v)]
        return min(finite) / max(finite) if finite and max(finite) > 0 else math.nan


def grad_reach(files: RunFiles, records: Sequence[RunRecord]) -> dict[str, GradReach]:
    """arch -> the run with the most compute among that arch's ``records`` that measured gradient reach."""
    best: dict[str, GradReach] = {}
    for record in records:
        rows = files.grad_rows(record.run)
        if not rows:
            continue
        reach = GradReach(record.run, record.arch, record.compute, [r["step"] for r in rows],
                          [r["src"] for r in rows], [r["tgt"] for r in rows])  # fmt: skip
        if record.arch not in best or reach.compute > best[record.arch].compute:
            best[record.arch] = reach
    return best


def load_grad_reach(sweep_dir: str | Path | RunFiles) -> dict[str, GradReach]:
    """`grad_reach` over every finished run of the sweep directory."""
    files = run_files_of(sweep_dir)
    return grad_reach(files, load_sweep(files.source).records)
