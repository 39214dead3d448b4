"""A study: the sweep read once, then every analysis the report renders, as one result object.

`fit_with_time_axis` is what ``fit.json`` holds (both `pipeline scaling fit` and `pipeline scaling report` write
it); `analyse_study` adds the rest of the report's analyses. Each run file is read once (`records.run_files`).

Memory-task records (`data.task: mqar | copy`) go to the capacity law (`analyses.capacity`) only: their
loss is an answer loss, not a text loss, so the text laws (L(C), plateaus, positions, ...) are fitted on the other
records, and skipped, with `text_skipped` saying why, when there are none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.scaling.analyses.arch_fit import largest_budget_runs
from pipeline.scaling.analyses.capacity import Capacity, capacity_study, is_memory_record
from pipeline.scaling.analyses.context_gain import ContextGain, context_gains
from pipeline.scaling.analyses.context_truncation import TruncationStudy, truncation_study
from pipeline.scaling.analyses.grad_reach import GradReach, grad_reach
from pipeline.scaling.analyses.matched_runs import MatchedRunRatios, matched_run_ratios
from pipeline.scaling.analyses.positions import PositionCurve, run_position_curve
from pipeline.scaling.analyses.source_length import Bucketed, source_lengths
from pipeline.scaling.analyses.sweep_fit import SweepFit, fit_sweep
from pipeline.scaling.analyses.time_axis import TimeAxis, time_axis
from pipeline.scaling.analyses.token_subset import TokenSelector, TokenSubsetResult, token_subset_losses
from pipeline.scaling.records.run_files import RunFiles
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.sweep_dir import LoadedSweep, Source, load_sweep


@dataclass(frozen=True)
class Study:
    """Everything `report/` renders; no renderer reads a file of the sweep. A memory-only sweep has no text
    analyses: `fit` and `time_axis` are None and `text_skipped` says why."""

    fit: SweepFit | None
    time_axis: TimeAxis | None
    position_curves: dict[
        str, list[tuple[RunRecord, PositionCurve]]
    ]  # arch -> each size's largest-budget run
    matched_runs: list[MatchedRunRatios]
    source_lengths: list[Bucketed]
    context_gains: list[ContextGain]  # the band difference: only where no run has a truncation file
    grad_reach: dict[str, GradReach]
    capacity: Capacity | None = None
    truncation: TruncationStudy | None = None  # the context estimate where runs carry valid_truncation.npz
    token_subset: TokenSubsetResult | None = None  # the loss on the tokens a user named, per run
    text_skipped: str = ""
    unfinished: tuple[str, ...] = ()  # planned runs without a record (what a memory-only report lists)


MEMORY_ONLY = (
    "every run is a memory task (data.task mqar/copy): its loss is an answer loss, so the text-task laws "
    "(L(N), L(C), L(D), positions, plateaus) are not fitted; see the capacity law"
)


def _split(loaded: LoadedSweep) -> tuple[LoadedSweep, list[RunRecord]]:
    """(the sweep's text-task records as a LoadedSweep, its memory-task records)."""
    memory = [r for r in loaded.records if is_memory_record(r)]
    return replace(loaded, records=[r for r in loaded.records if not is_memory_record(r)]), memory


def capacity_of(loaded: LoadedSweep, n_boot: int, seed: int, threshold: float) -> Capacity | None:
    return capacity_study(_split(loaded)[1], threshold, n_boot, seed)


def fit_with_time_axis(
    sweep_dir: Source,
    n_boot: int = 400,
    seed: int = 0,
    unigram_entropy: float | None = None,
    loaded: LoadedSweep | None = None,
    files: RunFiles | None = None,
) -> tuple[SweepFit, TimeAxis]:
    """The sweep's fits and its time axis (over the fitted runs): the content of fit.json. Memory-task records are
    left out (`_split`); with nothing else the fit raises ValueError (callers check `text_records` first)."""
    loaded = _split(load_sweep(sweep_dir) if loaded is None else loaded)[0]
    files = RunFiles(sweep_dir, loaded.run_dirs) if files is None else files
    sweep = fit_sweep(sweep_dir, n_boot, seed, unigram_entropy=unigram_entropy, loaded=loaded, files=files)
    fitted = [r for af in sweep.archs.values() for r in af.records]
    return sweep, time_axis(fitted, n_boot)  # measured seconds + projected GPU-hours


def unfinished(loaded: LoadedSweep) -> list[str]:
    """Planned runs without a record (without a plan.json: run directories without one)."""
    if loaded.planned is None:
        return loaded.skipped
    done = {r.run for r in loaded.records}
    return [n for n in loaded.planned if n not in done]


def memory_only(loaded: LoadedSweep) -> bool:
    """True when the sweep has finished runs and all of them are memory tasks (no text analyses to run)."""
    text, memory = _split(loaded)
    return bool(memory) and not text.records


def analyse_study(
    sweep_dir: Source,
    n_boot: int = 400,
    seed: int = 0,
    unigram_entropy: float | None = None,
    threshold: float = 0.9,
    tokens: TokenSelector | None = None,
) -> Study:
    """Read the sweep once and run every analysis of the report on it (``threshold``: the capacity law's;
    ``tokens``: a token subset to score)."""
    loaded = load_sweep(sweep_dir)
    files = RunFiles(sweep_dir, loaded.run_dirs)
    capacity = capacity_of(loaded, n_boot, seed, threshold)
    if memory_only(loaded):
        return Study(
            fit=None,
            time_axis=None,
            position_curves={},
            matched_runs=[],
            source_lengths=[],
            context_gains=[],
            grad_reach={},
            capacity=capacity,
            text_skipped=MEMORY_ONLY,
            unfinished=tuple(unfinished(loaded)),
        )
    text = _split(loaded)[0]
    sweep, times = fit_with_time_axis(sweep_dir, n_boot, seed, unigram_entropy, loaded, files)
    fitted = [r for af in sweep.archs.values() for r in af.records]
    curves = {a: [(r, run_position_curve(files, r)) for r in largest_budget_runs(af.records)]
              for a, af in sweep.archs.items()}  # fmt: skip
    truncation = truncation_study(
        files, fitted, n_boot=max(n_boot, 199), seed=seed, all_records=loaded.records
    )
    return Study(
        fit=sweep,
        time_axis=times,
        position_curves=curves,
        matched_runs=matched_run_ratios(fitted),
        source_lengths=source_lengths(files, fitted),
        context_gains=context_gains(files, fitted) if truncation is None else [],
        grad_reach=grad_reach(files, text.records),
        capacity=capacity,
        truncation=truncation,
        token_subset=None if tokens is None else token_subset_losses(files, text.records, tokens, seed=seed),
    )
