"""A study: the sweep read once, then every analysis the report renders, as one result object.

`fit_with_time_axis` is what ``fit.json`` holds (both `pipeline scaling fit` and `pipeline scaling report` write
it); `analyse_study` adds the rest of the report's analyses. Each run file is read once (`records.run_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.scaling.analyses.arch_fit import largest_budget_runs
from pipeline.scaling.analyses.context_gain import ContextGain, context_gains
from pipeline.scaling.analyses.grad_reach import GradReach, grad_reach
from pipeline.scaling.analyses.matched_runs import MatchedRunRatios, matched_run_ratios
from pipeline.scaling.analyses.positions import PositionCurve, run_position_curve
from pipeline.scaling.analyses.source_length import Bucketed, source_lengths
from pipeline.scaling.analyses.sweep_fit import SweepFit, fit_sweep
from pipeline.scaling.analyses.time_axis import TimeAxis, time_axis
from pipeline.scaling.analyses.token_subset import TokenSelector, TokenSubsetResult, token_subset_losses
from pipeline.scaling.records.run_files import RunFiles
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.sweep_dir import LoadedSweep, load_sweep


@dataclass(frozen=True)
class Study:
    """Everything `report/` renders; no renderer reads a file of the sweep."""

    fit: SweepFit
    time_axis: TimeAxis
    position_curves: dict[
        str, list[tuple[RunRecord, PositionCurve]]
    ]  # arch -> each size's largest-budget run
    matched_runs: list[MatchedRunRatios]
    source_lengths: list[Bucketed]
    context_gains: list[ContextGain]
    grad_reach: dict[str, GradReach]
    token_subset: TokenSubsetResult | None = None  # the loss on the tokens a user named, per run


def fit_with_time_axis(
    sweep_dir: str | Path,
    n_boot: int = 400,
    seed: int = 0,
    unigram_entropy: float | None = None,
    loaded: LoadedSweep | None = None,
    files: RunFiles | None = None,
) -> tuple[SweepFit, TimeAxis]:
    """The sweep's fits and its time axis (over the fitted runs): the content of fit.json."""
    loaded = load_sweep(sweep_dir) if loaded is None else loaded
    files = RunFiles(sweep_dir, loaded.run_dirs) if files is None else files
    sweep = fit_sweep(sweep_dir, n_boot, seed, unigram_entropy=unigram_entropy, loaded=loaded, files=files)
    fitted = [r for af in sweep.archs.values() for r in af.records]
    return sweep, time_axis(fitted, n_boot)  # measured seconds + projected GPU-hours


def analyse_study(
    sweep_dir: str | Path,
    n_boot: int = 400,
    seed: int = 0,
    unigram_entropy: float | None = None,
    tokens: TokenSelector | None = None,
) -> Study:
    """Read the sweep once and run every analysis of the report on it (`tokens`: a token subset to score)."""
    loaded = load_sweep(sweep_dir)
    files = RunFiles(sweep_dir, loaded.run_dirs)
    sweep, times = fit_with_time_axis(sweep_dir, n_boot, seed, unigram_entropy, loaded, files)
    fitted = [r for af in sweep.archs.values() for r in af.records]
    curves = {a: [(r, run_position_curve(files, r)) for r in largest_budget_runs(af.records)]
              for a, af in sweep.archs.items()}  # fmt: skip
    return Study(
        fit=sweep,
        time_axis=times,
        position_curves=curves,
        matched_runs=matched_run_ratios(fitted),
        source_lengths=source_lengths(files, fitted),
        context_gains=context_gains(files, fitted),
        grad_reach=grad_reach(files, loaded.records),
        token_subset=None
        if tokens is None
        else token_subset_losses(files, loaded.records, tokens, seed=seed),
    )
