"""The capacity law of a memory-task sweep: per architecture and width d, recall accuracy against N,
N*(d) with its CI, the law N* = c d^gamma, and bits of recall per state float.

Built from the records' `answer_metrics` (`pipeline/training/answer_metrics.py`) with the fits of
`fits.capacity_law`. The x axis is N, the number of pairs, for MQAR (one run per N cell) and the string length
for copy (each run's `by_length` rows: one run gives the whole curve; counts are strings copied exactly).

- Rates: at each (arch, d, N) the accuracy is the best over the scanned learning rates (Zoology's convention),
  the mean over seeds at that rate; the whole rate curve is kept (`RateChoice.curve`) and a best rate at the
  scan's edge is flagged. N*'s CI resamples the seeds and answers at each N's best rate.
- Several sequence lengths at one N (a pairs-vs-distance sweep): the N curve takes one L per N
  (`curve_lengths`: the shortest not below the previous N's); all of them go to `analyses.pairs_distance`.
- State size: the record's own (`state_floats`, computed by the model at the run's L). A Transformer's grows with
  L, so bits per float uses the state of the N cell nearest N* (in log N).
- An architecture is the record's `arch`: the registry name, or a grid arm's label (e.g. a Newton-solver arm).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.scaling.analyses.pairs_distance import PairsVsDistance, pairs_vs_distance
from pipeline.scaling.fits.capacity_law import (
    INTERPOLATED,
    CapacityLaw,
    NStar,
    RateChoice,
    check_threshold,
    fit_capacity_law,
    n_star,
    select_best_rates,
)
from pipeline.scaling.fits.points import record_lr
from pipeline.scaling.records.run_record import RunRecord

MEMORY_TASKS = ("mqar", "copy")
SeedCounts = tuple[int, int]  # (correct, total) answers of one run at one N


def is_memory_record(r: RunRecord) -> bool:
    return r.answer_metrics.get("task") in MEMORY_TASKS


def _width(r: RunRecord) -> int:
    model = r.config.get("model", {})
    d = model.get("d_model") if isinstance(model, dict) else None
    if not isinstance(d, int) or d <= 0:
        raise ValueError(f"run {r.run}: its config has no model.d_model (the width the capacity law is over)")
    return d


def _seed(r: RunRecord) -> int:
    return r.seed if r.seed is not None else int(r.config.get("seed", 0))


def _points(r: RunRecord) -> list[tuple[int, int, SeedCounts]]:
    """(N, L, (correct, total)) of one record: MQAR one point; copy one per evaluated length (exact strings)."""
    m = r.answer_metrics
    if m["task"] == "mqar":
        return [(int(m["N"]), int(m["L"]), (int(m["correct"]), int(m["answers"])))]
    return [(int(row["length"]), int(m["L"]), (int(row["exact"]), int(row["strings"])))
            for row in m.get("by_length", []) if row.get("strings")]  # fmt: skip


@dataclass(frozen=True)
class WidthCapacity:
    """One (architecture, width): the best-over-rates accuracy per N, the rate curves, N* and bits per float."""

    d: int
    n_star: NStar
    rates: dict[int, RateChoice]  # N -> the rate scan at that N (at its curve length, `curve_lengths`)
    seeds: dict[int, int]  # N -> seeds behind the best-rate accuracy
    state_floats: int  # of the N cell nearest N* (module docstring)
    state_bits: int
    state_floats_by_n: dict[int, int]
    bits_per_float: float  # N* log2(V/2) / state_floats (a bound's value when N* is a bound)

    @property
    def accuracy(self) -> dict[int, float]:
        return {n: c.best_accuracy for n, c in sorted(self.rates.items())}

    def to_dict(self) -> dict[str, Any]:
        s = self.n_star
        return {
            "d": self.d, "state_floats": self.state_floats, "state_bits": self.state_bits,
            "n_star": s.value, "kind": s.kind, "ci95": list(s.ci), "censored_share": s.censored,
            "bits_per_float": _num(self.bits_per_float),
            "accuracy": {str(n): a for n, a in self.accuracy.items()},
            "seeds": {str(n): k for n, k in sorted(self.seeds.items())},
            "state_floats_by_n": {str(n): k for n, k in sorted(self.state_floats_by_n.items())},
            "rates": {str(n): {"best_lr": c.best_lr, "best_accuracy": c.best_accuracy, "at_edge": c.at_edge,
                               "curve": {f"{lr:g}": a for lr, a in c.curve.items()}}
                      for n, c in sorted(self.rates.items())},
        }  # fmt: skip


@dataclass(frozen=True)
class ArchCapacity:
    arch: str
    widths: dict[int, WidthCapacity]
    law: CapacityLaw
    by_distance: list[dict[str, Any]]  # MQAR: summed best-rate counts per query-distance bucket

    def to_dict(self) -> dict[str, Any]:
        law = self.law
        return {
            "widths": {str(d): w.to_dict() for d, w in sorted(self.widths.items())},
            "law": {"c": _num(law.c), "gamma": _num(law.gamma), "gamma_ci95": [_num(x) for x in law.gamma_ci],
                    "widths_fitted": list(law.widths), "excluded": {str(d): k for d, k in law.excluded.items()},
                    "one_grid_interval": list(law.one_interval) if law.one_interval else None},
            "by_distance": self.by_distance,
        }  # fmt: skip


@dataclass(frozen=True)
class Capacity:
    """The capacity study of a sweep: what report/capacity_section.py renders and fit.json's `capacity` holds."""

    task: str
    vocab_size: int
    threshold: float
    chance: float  # MQAR: 1/(V/2) (a guess among the values); copy: exact match of a random string (~0)
    value_bits: float  # bits of one recalled item: log2(V/2) for MQAR, log2(alphabet) per copied letter
    archs: dict[str, ArchCapacity]
    pairs_vs_distance: list[PairsVsDistance] = field(default_factory=list)
    cells: list[tuple[int, int]] = field(default_factory=list)  # every (L, N) of the sweep
    n_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "V": self.vocab_size, "threshold": self.threshold, "chance": self.chance,
            "value_bits": self.value_bits, "n_runs": self.n_records, "cells_L_N": [list(c) for c in self.cells],
            "definition": "N*: largest N with best-over-rates accuracy >= threshold, interpolated in log N; CI: "
                          "bootstrap over seeds and answers; law N* = c d^gamma over interpolated widths",
            "archs": {a: ac.to_dict() for a, ac in self.archs.items()},
            "pairs_vs_distance": [p.to_dict() for p in self.pairs_vs_distance],
        }  # fmt: skip


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _by_distance(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    sums: dict[tuple[int, int], list[float]] = {}
    for r in records:
        for row in r.answer_metrics.get("by_distance", []):
            s = sums.setdefault(tuple(row["distance"]), [0, 0, 0.0])
            s[0], s[1], s[2] = (
                s[0] + row["answers"],
                s[1] + row["correct"],
                s[2] + row["loss"] * row["answers"],
            )
    return [{"distance": list(k), "answers": int(a), "correct": int(c), "accuracy": c / a, "loss": nll / a}
            for k, (a, c, nll) in sorted(sums.items()) if a]  # fmt: skip


def curve_lengths(cells: Iterable[tuple[int, int]]) -> dict[int, int]:
    """(L, N) cells run -> for each N the sequence length L whose runs give the N curve: N ascending, each at its
    shortest L not below the previous N's; an N run only at shorter L is left off the curve (it stays in pairs
    versus distance). A pairs-vs-distance cell at a shorter L (N = 2 at L = 8 beside the study's L = 32) then
    never stands in for the study's cell, and Zoology's diagonal (L, N) = (64, 4), (128, 8), (256, 16) keeps N = 8
    at 128 when N = 8 was also run at 256 and 512."""
    lengths: dict[int, set[int]] = {}
    for length, n in cells:
        lengths.setdefault(n, set()).add(length)
    out: dict[int, int] = {}
    floor = 0
    for n in sorted(lengths):
        longer = [length for length in lengths[n] if length >= floor]
        if longer:
            out[n] = floor = min(longer)
    return out


def _width_capacity(d: int, records: Sequence[RunRecord], threshold: float, value_bits: float, n_boot: int,
                    seed: int) -> tuple[WidthCapacity, list[RunRecord]]:  # fmt: skip
    """N* of one (arch, d); also the records at each N's best rate (for the distance buckets)."""
    curve_l = curve_lengths((length, n) for r in records for n, length, _ in _points(r))
    by_rate: dict[float, dict[int, dict[int, SeedCounts]]] = {}
    floats: dict[tuple[int, float], tuple[int, int]] = {}
    runs: dict[tuple[int, float], dict[int, RunRecord]] = {}
    for r in sorted(records, key=lambda r: r.tokens):  # several budgets: the largest one's run wins
        lr = record_lr(r) or 0.0
        for n, length, counts in _points(r):
            if length == curve_l.get(n):
                by_rate.setdefault(lr, {}).setdefault(n, {})[_seed(r)] = counts
                floats[n, lr] = (int(r.answer_metrics["state_floats"]), int(r.answer_metrics["state_bits"]))
                runs.setdefault((n, lr), {})[_seed(r)] = r
    results = {lr: {n: list(s.values()) for n, s in by_n.items()} for lr, by_n in by_rate.items()}
    # the rate is chosen on the first seed, as the sweep chose where to run the others (replicate_best_lr)
    first = min(_seed(r) for r in records)
    first_seed = {lr: {n: [s[first]] for n, s in by_n.items() if first in s} for lr, by_n in by_rate.items()}
    one_rate = records[0].answer_metrics["task"] == "copy"  # one run scores every length: one rate
    chosen, choices = select_best_rates(results, one_rate=one_rate, choose_on=first_seed)
    ns = n_star(chosen, threshold, n_boot=n_boot, seed=seed)
    near = min(choices, key=lambda n: abs(math.log(n) - math.log(ns.value)))
    fl, bits = floats[near, choices[near].best_lr]
    best_runs = list({id(r): r for n, c in choices.items() for r in runs[n, c.best_lr].values()}.values())
    width = WidthCapacity(
        d=d, n_star=ns, rates=choices, seeds={n: len(v) for n, v in chosen.items()}, state_floats=fl,
        state_bits=bits, state_floats_by_n={n: floats[n, c.best_lr][0] for n, c in choices.items()},
        bits_per_float=ns.value * value_bits / fl,
    )  # fmt: skip
    return width, best_runs


def capacity_study(records: Sequence[RunRecord], threshold: float = 0.9, n_boot: int = 400,
                   seed: int = 0) -> Capacity | None:  # fmt: skip
    """The memory-task records of a sweep -> its capacity law; None when it has none. One task per sweep."""
    check_threshold(threshold)
    memory = [r for r in records if is_memory_record(r)]
    if not memory:
        return None
    tasks = sorted({r.answer_metrics["task"] for r in memory})
    vocab = sorted({int(r.answer_metrics["V"]) for r in memory})
    if len(tasks) > 1 or len(vocab) > 1:
        raise ValueError(f"a capacity study is one task at one vocabulary; this sweep mixes tasks {tasks} and "
                         f"V {vocab}: report them as separate sweeps")  # fmt: skip
    task, V = tasks[0], vocab[0]
    if task == "mqar":
        value_bits, chance = math.log2(V / 2), 1 / (V / 2)
    else:
        alphabet = int(memory[0].answer_metrics.get("alphabet_size", V - 4))
        value_bits, chance = math.log2(alphabet), 0.0
    groups: dict[str, dict[int, list[RunRecord]]] = {}
    for r in memory:
        groups.setdefault(r.arch, {}).setdefault(_width(r), []).append(r)
    archs = {}
    for a, by_d in sorted(groups.items()):
        widths, best = {}, []
        for i, (d, rs) in enumerate(sorted(by_d.items())):
            widths[d], runs = _width_capacity(d, rs, threshold, value_bits, n_boot, seed + i)
            best += runs
        law = fit_capacity_law({d: w.n_star for d, w in widths.items()}, n_boot=n_boot, seed=seed)
        archs[a] = ArchCapacity(a, widths, law, _by_distance(best) if task == "mqar" else [])
    cells = sorted({(int(r.answer_metrics["L"]), n) for r in memory for n, _, _ in _points(r)})
    pvd = pairs_vs_distance(memory, _width, _points) if task == "mqar" else []
    return Capacity(task, V, threshold, chance, value_bits, archs, pvd, cells, len(memory))


def interpolated(w: WidthCapacity) -> bool:
    return w.n_star.kind == INTERPOLATED


def mean_accuracy(w: WidthCapacity) -> float:
    """The width's mean best-over-rates accuracy over its N cells (the Based Fig. 2 y axis)."""
    return float(np.mean(list(w.accuracy.values())))
