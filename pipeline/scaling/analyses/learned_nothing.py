"""Runs that learned nothing beyond token frequencies: final loss at or above the train-unigram cross-entropy on
the validation targets (``RunRecord.unigram_xent``), the loss of a model that learned the train
frequencies and nothing else. Such a run says nothing about how loss scales with size or compute, so the fits leave
it out and the report counts it. One rule in every study.

Records written before ``unigram_xent`` existed fall back to the old rule, the validation targets' own unigram
entropy (``unigram_entropy``, or the value given on the command line): a lower bar (Gibbs: H(q) <= H(q, p)), so a
run between the two, which beat a frequency-only model, is excluded. The report says how many records used it;
``pipeline scaling rescore`` adds the field to old records from their prepared data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pipeline.scaling.analyses.lr_scan import LrScan, select_best_lr
from pipeline.scaling.fits.points import snap_budgets
from pipeline.scaling.records.run_record import RunRecord


def unigram_entropy(token_counts: Mapping[int, int] | Sequence[int] | np.ndarray | Iterable[int]) -> float:
    """Entropy in nats of the unigram distribution given by ``token_counts`` (a token -> count mapping, or one
    count per token id; zeros allowed). The sweep stores it per run as ``RunRecord.unigram_entropy``, counted
    over the validation targets the run is scored on (e.g. ``np.bincount(valid_target_ids)``)."""
    values = token_counts.values() if isinstance(token_counts, Mapping) else token_counts
    counts = np.asarray(list(values), dtype=float)
    if counts.size == 0 or np.any(counts < 0) or not np.all(np.isfinite(counts)) or counts.sum() <= 0:
        raise ValueError(
            f"unigram_entropy: token counts must be finite, >= 0 and not all 0, got {counts[:8]}"
        )
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def entropy_of(record: RunRecord, fallback: float | None = None) -> float | None:
    """The record's yardstick: its train-unigram cross-entropy, else (old records) its validation unigram entropy,
    else ``fallback`` (e.g. given on the command line)."""
    if record.unigram_xent is not None:
        return record.unigram_xent
    return record.unigram_entropy if record.unigram_entropy is not None else fallback


def old_rule_runs(records: Sequence[RunRecord], fallback: float | None = None) -> int:
    """How many records are judged by the old rule (no ``unigram_xent``, but an entropy or a fallback)."""
    return sum(r.unigram_xent is None and entropy_of(r, fallback) is not None for r in records)


def learned_nothing(record: RunRecord, fallback: float | None = None) -> bool:
    """True when the run's final loss is >= its yardstick (``entropy_of``); False when unknown."""
    h = entropy_of(record, fallback)
    return h is not None and math.isfinite(h) and record.final_valid_loss >= h


def split_learned_nothing(
    records: Sequence[RunRecord], fallback: float | None = None
) -> tuple[list[RunRecord], list[RunRecord], int]:
    """(runs that learned something or are not known not to, runs that learned nothing, runs with no entropy)."""
    keep, flagged = [], []
    for r in records:
        (flagged if learned_nothing(r, fallback) else keep).append(r)
    unknown = sum(entropy_of(r, fallback) is None for r in records)
    return keep, flagged, unknown


def fitted_runs(records: Sequence[RunRecord], fallback: float | None = None) -> tuple[
    list[RunRecord], list[RunRecord], list[RunRecord], list[RunRecord], int, LrScan
]:  # fmt: skip
    """The one rule for which runs a fit uses: (every run with budgets snapped, kept, learned nothing, other rates,
    runs of unknown entropy, the rate scan). Kept = at its size's best rate and learned something; the rate is chosen
    on every run (one that learned nothing simply loses), then such runs leave the fits."""
    records = snap_budgets(records)  # one budget's seeds train a few tokens apart
    learned, nothing, unknown = split_learned_nothing(records, fallback)
    best, scan = select_best_lr(records)
    is_learned, is_best = {id(r) for r in learned}, {id(r) for r in best}
    kept = [r for r in best if id(r) in is_learned]
    other_lr = [r for r in learned if id(r) not in is_best]
    return records, kept, nothing, other_lr, unknown, scan
