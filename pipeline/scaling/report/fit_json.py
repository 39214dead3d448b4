"""``fit.json``: the one writer, for `pipeline scaling fit` and `pipeline scaling report` alike.

Every fitted number of a sweep (`analyses.sweep_fit.SweepFit`) and its time axis (`analyses.time_axis.TimeAxis`),
as JSON with null for undetermined values. The figures and report.md are the other renderings of the same fit.
A sweep with memory-task runs adds `capacity` (`analyses.capacity.Capacity.to_dict`); a memory-only
sweep has no text fits: `archs` is empty and `text_fits_skipped` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.scaling.analyses.arch_fit import ArchFit
from pipeline.scaling.analyses.capacity import Capacity
from pipeline.scaling.analyses.study import (
    MEMORY_ONLY,
    capacity_of,
    fit_with_time_axis,
    memory_only,
    unfinished,
)
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.analyses.time_axis import TimeAxis
from pipeline.scaling.fits.compute_axes import COMPUTE_AXES
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.fits.frontier import FrontierPoint
from pipeline.scaling.records.json_file import save_json_atomic
from pipeline.scaling.records.sweep_dir import Source, load_sweep, source_dir

FIT_FILE = "fit.json"


def _front(points: Sequence[FrontierPoint]) -> list[dict[str, Any]]:
    return [{"run": q.run, "tokens": q.tokens, "compute": q.compute, "loss": q.loss} for q in points]


def _arch_dict(af: ArchFit) -> dict[str, Any]:
    scan = af.lr_scan
    out: dict[str, Any] = {
        "n_runs": len(af.records),
        "n_runs_total": len(af.all_records),
        "learned_nothing": [r.run for r in af.learned_nothing],
        "entropy_unknown_runs": af.entropy_unknown,
        "other_lr_runs": [r.run for r in af.other_lr],
        "lr_scan": None
        if scan is None or not scan.scanned
        else {
            str(n): {
                "tokens": scan.tokens[n],
                "best_lr": scan.best[n],
                "loss": {str(lr): {"mean": m, "seeds": k} for lr, (m, k) in scan.loss[n].items()},
            }
            for n in scan.loss
        },  # fmt: skip
        "points": [
            {
                "n": p.n,
                "tokens": p.tokens,
                "lr": p.lr,
                "loss": p.loss,
                "spread": _num(p.spread),
                "seeds": p.n_seeds,
                "runs": [r.run for r in p.runs],
            }
            for p in af.points
        ],  # fmt: skip
        "fits": {k: f.to_dict() for k, f in af.fits.items()},
        "isoflop": af.isoflop.to_dict() if af.isoflop else None,
    }
    if af.records:
        out |= {
            "non_embedding_sizes": af.sizes,
            "token_budgets": sorted({r.tokens for r in af.records}),
            "max_epochs": max(r.epochs for r in af.records),
            "compute_range": list(af.compute_range),
            "frontier": _front(af.frontier),
            "frontiers": {axis: _front(f) for axis, f in af.frontiers.items()},
            "compute_exponents": {
                axis: {f"alpha{k}": af.fits[key + k].to_dict()["params"].get("alpha") for k in ("", "_E")}
                | {f"ci95{k}": af.fits[key + k].to_dict()["ci95"].get("alpha") for k in ("", "_E")}
                | {"fit_keys": [key, key + "_E"], "definition": COMPUTE_AXES[axis]}
                for axis, key in ((a, "L_C" if a == "model" else f"L_C_{a}") for a in COMPUTE_AXES)
            },
        }
    return out


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def sweep_to_dict(sweep: SweepFit, time_axis: TimeAxis | None = None) -> dict[str, Any]:
    """The content of fit.json (``time_axis``: its entry, when computed)."""
    every = [*sweep.archs.values(), *sweep.unfitted.values()]
    flagged = [r.run for af in every for r in af.learned_nothing]
    out: dict[str, Any] = {
        "sweep_dir": str(sweep.sweep_dir),
        "n_runs": sum(len(a.all_records) for a in every),
        "n_runs_fitted": sum(len(a.records) for a in sweep.archs.values()),
        "planned_runs": sweep.planned,
        "skipped_runs": sweep.skipped,
        "learned_nothing": {
            "count": len(flagged),
            "runs": flagged,
            "entropy_unknown_runs": sum(a.entropy_unknown for a in every),
        },
        "settings": sweep.settings,
        "archs": {name: _arch_dict(af) for name, af in sweep.archs.items()},
        "unfitted_archs": {name: _arch_dict(af) for name, af in sweep.unfitted.items()},
        "comparisons": [c.to_dict() for c in sweep.comparisons],
        "plateaus": {a: {"vs": REFERENCE_ARCH, **p.to_dict()} for a, p in sweep.plateaus.items()},
    }
    if time_axis is not None:
        out["time_axis"] = time_axis.to_dict()
    return out


def memory_only_dict(sweep_dir: str | Path, n_runs: int, skipped: list[str], why: str) -> dict[str, Any]:
    """fit.json's text part for a sweep without text-task runs."""
    return {"sweep_dir": str(sweep_dir), "n_runs": n_runs, "n_runs_fitted": 0, "skipped_runs": skipped,
            "archs": {}, "unfitted_archs": {}, "comparisons": [], "text_fits_skipped": why}  # fmt: skip


def write_fit_json(
    out_dir: str | Path,
    sweep: SweepFit | None,
    time_axis: TimeAxis | None,
    capacity: Capacity | None = None,
    sweep_dir: str | Path = "",
    skipped: list[str] | None = None,
    text_skipped: str = MEMORY_ONLY,
) -> dict[str, Any]:
    """Write ``out_dir/fit.json``; returns the same dict. ``sweep`` None: a memory-only sweep (``sweep_dir``
    ``skipped`` and ``text_skipped`` then say which, its unfinished runs and why)."""
    if sweep is None:
        out = memory_only_dict(sweep_dir, capacity.n_records if capacity else 0, skipped or [], text_skipped)
    else:
        out = sweep_to_dict(sweep, time_axis)
    if capacity is not None:
        out["capacity"] = capacity.to_dict()
    save_json_atomic(Path(out_dir) / FIT_FILE, out)
    return out


def run_fit(
    sweep_dir: Source,
    n_boot: int = 400,
    seed: int = 0,
    out_dir: str | Path | None = None,
    unigram_entropy: float | None = None,
    threshold: float = 0.9,
) -> dict[str, Any]:
    """`pipeline scaling fit`: fit a sweep and write ``fit.json`` into ``out_dir`` (default SWEEP_DIR); returns the
    same dict, the same content `pipeline scaling report` writes."""
    loaded = load_sweep(sweep_dir)
    capacity = capacity_of(loaded, n_boot, seed, threshold)
    sweep, times = (None, None) if memory_only(loaded) else fit_with_time_axis(
        sweep_dir, n_boot, seed, unigram_entropy, loaded
    )  # fmt: skip
    out = source_dir(sweep_dir) if out_dir is None else Path(out_dir)
    return write_fit_json(out, sweep, times, capacity, source_dir(sweep_dir), unfinished(loaded))
