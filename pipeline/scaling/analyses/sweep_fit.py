"""A whole sweep fitted: every architecture's laws (`arch_fit`), each pair's L(C) comparison (independent and,
where runs match, paired), and each recurrent architecture's context plateau against the reference.

The result, `SweepFit`, is what `fit.json` and `report.md` render (`report/`); it is built once, from the sweep
read once (`records.sweep_dir.load_sweep`, `records.run_files.RunFiles`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.scaling.analyses.arch_fit import LAWS_PER_ARCH, ArchFit, fit_arch
from pipeline.scaling.analyses.learned_nothing import entropy_of
from pipeline.scaling.analyses.plateau import Plateau, position_plateau
from pipeline.scaling.fits.compute_law import lc_fit_points
from pipeline.scaling.fits.crossing import (
    EXTRAPOLATE,
    REFERENCE_ARCH,
    Crossing,
    compare_curves,
    comparison_window,
)
from pipeline.scaling.fits.intervals import fit_rng
from pipeline.scaling.fits.paired_crossing import match_points, paired_compare
from pipeline.scaling.fits.progress import ProgressLines
from pipeline.scaling.records.run_files import RunFiles
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.sweep_dir import LoadedSweep, load_sweep, source_dir


@dataclass(frozen=True)
class SweepFit:
    sweep_dir: Path
    skipped: list[str]  # planned runs without a record (or, with no plan.json, run dirs without one)
    archs: dict[str, ArchFit]
    comparisons: list[Crossing] = field(default_factory=list)
    plateaus: dict[str, Plateau] = field(default_factory=dict)  # arch -> plateau against REFERENCE_ARCH
    settings: dict[str, Any] = field(default_factory=dict)
    planned: int | None = None  # runs in the sweep's plan.json (written by `pipeline sweep`), if there is one
    # architectures none of whose runs could be fitted (all learned nothing): counted, not fitted or drawn
    unfitted: dict[str, ArchFit] = field(default_factory=dict)
    # arch -> why it was not compared with REFERENCE_ARCH by position (one side learned nothing, by how much)
    plateau_skipped: dict[str, str] = field(default_factory=dict)


def _comparisons(archs: dict[str, ArchFit], n_boot: int, seed: int) -> list[Crossing]:
    """Every pair's L(C) crossing (independent resamples), and the paired one where their runs match."""
    out = []
    names = sorted(archs, key=lambda a: (a == REFERENCE_ARCH, a))  # the reference goes second in each pair
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = archs[a].fits.get("L_C"), archs[b].fits.get("L_C")
            if fa is None or fb is None or fa.underdetermined or fb.underdetermined:
                continue
            at, rng = comparison_window(archs[a].compute_range, archs[b].compute_range)
            out.append(compare_curves(a, fa, b, fb, at, rng))
            matched = match_points(archs[a].points, archs[b].points)
            paired = paired_compare(
                a, b, matched, lc_fit_points, at, rng, n_boot, fit_rng(seed, a, b, "paired")
            )
            if paired is not None:
                out.append(paired)
    return out


def _plateaus(archs: dict[str, ArchFit], files: RunFiles, seed: int) -> dict[str, Plateau]:
    """Each architecture's lowest-loss run against the reference's, by target position."""
    if REFERENCE_ARCH not in archs or not archs[REFERENCE_ARCH].records:
        return {}
    ref = min(archs[REFERENCE_ARCH].records, key=lambda r: r.final_valid_loss)
    out = {}
    for a in sorted(archs, key=lambda a: (a == REFERENCE_ARCH, a)):
        if a != REFERENCE_ARCH and archs[a].records:
            best = min(archs[a].records, key=lambda r: r.final_valid_loss)
            out[a] = position_plateau([best], [ref], sweep_dir=files, seed=seed)
    return out


def _nothing_learned(af: ArchFit, fallback: float | None) -> str:
    """Why `af` has no run to compare: every run learned nothing; its best run's margin above the entropy."""
    best = min(af.learned_nothing or af.all_records, key=lambda r: r.final_valid_loss, default=None)
    if best is None:
        return f"no finished {af.arch} run"
    h = entropy_of(best, fallback)
    margin = "" if h is None else f", {best.final_valid_loss - h:.3g} nats above its unigram entropy {h:.4g}"
    return (
        f"every {af.arch} run learned nothing (the best, `{best.run}`, ends at {best.final_valid_loss:.4g} "
        f"nats{margin})"
    )


def _plateaus_skipped(archs: dict[str, ArchFit], fallback: float | None) -> dict[str, str]:
    """The architectures `_plateaus` leaves out, each with the real reason."""
    ref = archs.get(REFERENCE_ARCH)
    out = {}
    for a, af in archs.items():
        if a == REFERENCE_ARCH:
            continue
        if not af.records:
            out[a] = f"not compared with {REFERENCE_ARCH}: {_nothing_learned(af, fallback)}"
        elif ref is not None and not ref.records:
            out[a] = f"not compared with {REFERENCE_ARCH}: {_nothing_learned(ref, fallback)}"
    return out


def fit_sweep(
    sweep_dir: str | Path,
    n_boot: int = 400,
    seed: int = 0,
    n_starts: int | None = 64,
    unigram_entropy: float | None = None,
    progress: bool = True,
    loaded: LoadedSweep | None = None,
    files: RunFiles | None = None,
) -> SweepFit:
    """Fit every architecture of a sweep. ``unigram_entropy`` (nats) is used for records that do not carry their
    own (written before the field existed); ``progress`` prints a line to stderr every ~10 s of bootstrap.
    ``loaded`` and ``files``: the sweep as already read (else read here)."""
    loaded = load_sweep(sweep_dir) if loaded is None else loaded
    if not loaded.records:
        raise ValueError(f"{sweep_dir}: no finished runs (no */result.json); skipped: {loaded.skipped}")
    by_arch: dict[str, list[RunRecord]] = {}
    for r in loaded.records:
        by_arch.setdefault(r.arch, []).append(r)
    bar = (
        ProgressLines(LAWS_PER_ARCH * n_boot * len(by_arch), "scaling fit")
        if progress and n_boot > 0
        else None
    )
    every = {
        a: fit_arch(rs, n_boot, seed, n_starts, unigram_entropy, bar) for a, rs in sorted(by_arch.items())
    }
    if bar is not None:
        bar.finish()
    archs = {a: af for a, af in every.items() if af.records}
    if not archs:
        raise ValueError(
            f"{sweep_dir}: every run learned nothing (final loss >= unigram entropy): nothing to fit"
        )
    skipped = loaded.skipped
    if (
        loaded.planned is not None
    ):  # the grid's full list: unfinished runs that never started count as missing too
        done = {r.run for r in loaded.records}
        skipped = [n for n in loaded.planned if n not in done]
    return SweepFit(
        sweep_dir=source_dir(sweep_dir),
        skipped=skipped,
        archs=archs,
        comparisons=_comparisons(every, n_boot, seed),
        plateaus=_plateaus(every, RunFiles(sweep_dir, loaded.run_dirs) if files is None else files, seed),
        settings={
            "n_boot": n_boot,
            "seed": seed,
            "n_starts": n_starts,
            "extrapolate": EXTRAPOLATE,
            "unigram_entropy_fallback": unigram_entropy,
        },  # fmt: skip
        planned=None if loaded.planned is None else len(loaded.planned),
        unfitted={a: af for a, af in every.items() if not af.records},
        plateau_skipped=_plateaus_skipped(every, unigram_entropy),
    )
