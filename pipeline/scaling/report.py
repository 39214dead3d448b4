"""Fit every architecture of a sweep (``fit.json``); ``report_markdown.py`` turns the fits into ``report.md`` and
``plots.py`` into PNGs.

What is fitted to what (chosen here once, stated in the report):
- Runs whose final loss is >= the unigram entropy of the validation targets learned nothing beyond token
  frequencies (``learned_nothing.py``): left out of every fit and counted. Where a size was trained at several
  learning rates, only its best rate's runs are fitted (``seeds_lr.py``). Seeds of one (size, budget, rate) form a
  point: fits use the mean over seeds, the bootstrap resamples points and then seeds inside each.
- L(N) at fixed D (``L_N``, ``L_N_E``): per size, its largest-budget point (``best_valid_loss``, every seed run),
  least squares on log loss, studentized residual bootstrap. At a fixed D this mostly measures the data floor, so
  it is labelled fixed-D; the identified L(N) is ``L_N_surface``, E + A/N^alpha from the Chinchilla surface.
- L(C) on three compute axes (``compute_axes.py``: model FLOPs, without the output projection, 6N): the lower
  envelope of every validation point of every run (final point only for records without a curve); BCa over points.
- L(N, D): every point, D = target tokens trained on (repeats included), loss = mean ``final_valid_loss``.
- IsoFLOP profiles (``isoflop.py``) on the model-FLOPs axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.compare import Crossing, compare_curves
from pipeline.scaling.compute_axes import COMPUTE_AXES, FrontierPoint, flops_per_token, frontier, mean_curve
from pipeline.scaling.fit import FitResult, fit_power_law
from pipeline.scaling.fit_bootstrap import bootstrap_groups, fit_chinchilla_bootstrap, fit_power_law_bootstrap
from pipeline.scaling.intervals import fit_rng
from pipeline.scaling.isoflop import IsoFlopResult, isoflop
from pipeline.scaling.learned_nothing import fitted_runs
from pipeline.scaling.paired_fits import match_points, paired_compare
from pipeline.scaling.plateau import Plateau, position_plateau
from pipeline.scaling.progress import ProgressLines
from pipeline.scaling.records import RunRecord, load_sweep, save_json_atomic
from pipeline.scaling.seeds_lr import LrScan, Point, group_points

PLAN_FILE = "plan.json"  # `pipeline sweep` lists every run of the grid here
REFERENCE_ARCH = "transformer"  # the curve the recurrent architectures are compared against
# crossings are searched this factor beyond the measured compute range, and flagged if found there
EXTRAPOLATE = 10.0


def comparison_window(
    range_a: tuple[float, float], range_b: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """Where two L(C) laws are compared (the largest compute both reached: neither is extrapolated there) and the
    range their crossing is searched in; one rule for the report and for `pipeline scaling coverage`."""
    (lo_a, hi_a), (lo_b, hi_b) = range_a, range_b
    return min(hi_a, hi_b), (min(lo_a, lo_b) / EXTRAPOLATE, max(hi_a, hi_b) * EXTRAPOLATE)


LAWS_PER_ARCH = 10  # bootstrap loops per architecture (for the progress count)


@dataclass
class ArchFit:
    arch: str
    records: list[RunRecord]  # the runs the fits use: learned something, at their size's best learning rate
    fits: dict[str, FitResult]  # "L_N", "L_N_E" (fixed D), "L_N_surface", "L_C[_axis][_E]", "chinchilla"
    frontier: list[FrontierPoint]  # model-FLOPs frontier (``frontiers["model"]``)
    all_records: list[RunRecord] = field(default_factory=list)  # every finished run of the architecture
    learned_nothing: list[RunRecord] = field(default_factory=list)
    other_lr: list[RunRecord] = field(default_factory=list)  # runs at a size's worse learning rates
    entropy_unknown: int = 0  # runs whose unigram entropy is not known (not checked)
    lr_scan: LrScan | None = None
    frontiers: dict[str, list[FrontierPoint]] = field(default_factory=dict)
    isoflop: IsoFlopResult | None = None

    @property
    def points(self) -> list[Point]:
        return group_points(self.records)

    @property
    def sizes(self) -> list[int]:
        return sorted({r.non_embedding_params for r in self.records})

    @property
    def compute_range(self) -> tuple[float, float]:
        c = [r.compute for r in self.records]
        return min(c), max(c)


@dataclass
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


def largest_budget_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Per non-embedding size, its run with the most tokens (ties: the lower loss), ordered by size."""
    top: dict[int, RunRecord] = {}
    for r in records:
        old = top.get(r.non_embedding_params)
        if old is None or (r.tokens, -r.best_valid_loss) > (old.tokens, -old.best_valid_loss):
            top[r.non_embedding_params] = r
    return [top[n] for n in sorted(top)]


def largest_budget_points(records: Sequence[RunRecord]) -> list[Point]:
    """Per non-embedding size, its point (all seeds) with the most tokens, ordered by size."""
    top: dict[int, Point] = {}
    for p in group_points(records):
        if p.n not in top or (p.tokens, -p.best_loss) > (top[p.n].tokens, -top[p.n].best_loss):
            top[p.n] = p
    return [top[n] for n in sorted(top)]


def points_by_size(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(N, mean best_valid_loss over seeds) of each size's largest-budget point: what L(N) at fixed D describes."""
    pts = largest_budget_points(records)
    return np.array([p.n for p in pts], dtype=float), np.array([p.best_loss for p in pts])


def surface_law_n(chin: FitResult) -> FitResult:
    """L(N) = E + (x_c/N)^alpha with x_c = A^(1/alpha): the Chinchilla surface at D -> infinity. Its exponent is
    identified (D is in the fit), unlike a power law through each size's loss at one D."""
    names = ("alpha", "x_c", "E")
    if chin.underdetermined:
        return FitResult("power_law", dict.fromkeys(names, math.nan), chin.n_points, 5, underdetermined=True,
                         reason=chin.reason, note="from the L(N, D) surface")  # fmt: skip

    def law(p: dict[str, float]) -> list[float]:
        with np.errstate(all="ignore"):
            return [p["alpha"], float(np.exp(np.log(p["A"]) / p["alpha"])), p["E"]]

    out = FitResult("power_law", dict(zip(names, law(chin.params), strict=True)), chin.n_points, 5)
    out.note, out.interval, out.n_boot, out.n_boot_ok = "E + A/N^alpha of the L(N, D) surface (D -> inf)", \
        chin.interval, chin.n_boot, chin.n_boot_ok  # fmt: skip
    if chin.samples is not None:
        out.samples = np.array([law(p) for p in chin.sample_params()])
        # in log space: x_c = A^(1/alpha) overflows to inf for small alpha, and percentiles between two infs are
        # inf - inf (numpy's "invalid value encountered in subtract"); a bound that is still undefined is NaN
        with np.errstate(all="ignore"):
            log_xc = np.array([np.log(p["A"]) / p["alpha"] for p in chin.sample_params()])
            lo, hi = np.exp(np.nanpercentile(log_xc, [2.5, 97.5]))
        out.ci = {"alpha": chin.ci["alpha"], "x_c": (float(lo), float(hi)), "E": chin.ci["E"]}
    return out


def lc_fitter(points: list[Point], axis: str, with_e: bool):
    runs = [r for p in points for r in p.runs]
    fpt = [flops_per_token(r, axis) for r in runs]
    groups, i = [], 0
    for p in points:
        groups.append(np.arange(i, i + len(p.runs)))
        i += len(p.runs)

    def fit_on(draw: list[np.ndarray]) -> FitResult:
        curves = [(runs[g[0]].run, fpt[g[0]], mean_curve([runs[j] for j in g])) for g in draw]
        front = frontier(curves)
        return fit_power_law([q.compute for q in front], [q.loss for q in front], with_e=with_e)

    return fit_on, groups, runs, fpt


def lc_fit_points(points: list[list[RunRecord]], axis: str = "model") -> FitResult:
    """L(C) (no E) on the frontier of the given points (each a list of seed runs): the paired comparison's fitter."""
    curves = [(runs[0].run, flops_per_token(runs[0], axis), mean_curve(runs)) for runs in points]
    front = frontier(curves)
    return fit_power_law([q.compute for q in front], [q.loss for q in front])


def fit_arch(
    records: list[RunRecord],
    n_boot: int = 400,
    seed: int = 0,
    n_starts: int | None = 64,
    unigram_entropy: float | None = None,
    progress: ProgressLines | None = None,
) -> ArchFit:
    """All fits for one architecture; each law draws its resamples from its own (seed, arch, law) stream."""
    arch = records[0].arch
    tick = progress.tick if progress else (lambda: None)
    stage = progress.set_stage if progress else (lambda s: None)
    records, kept, nothing, other_lr, unknown, scan = fitted_runs(records, unigram_entropy)
    fits: dict[str, FitResult] = {}
    frontiers: dict[str, list[FrontierPoint]] = {}
    if not kept:
        return ArchFit(arch, [], {}, [], records, nothing, other_lr, unknown, scan)
    top = largest_budget_points(kept)
    x = np.array([p.n for p in top for _ in p.runs], dtype=float)
    y = np.array([r.best_valid_loss for p in top for r in p.runs])
    fixed = (
        f"fixed D: each size's largest budget ({', '.join(sorted({f'{p.tokens:,}' for p in top}))} tokens)"
    )
    for key, with_e in (("L_N", False), ("L_N_E", True)):
        stage(f"{arch} {key}")
        fits[key] = fit_power_law_bootstrap(x, y, with_e, n_boot, rng=fit_rng(seed, arch, key), tick=tick)
        fits[key].note = fixed
    points = group_points(kept)
    for axis in COMPUTE_AXES:
        suffix = "" if axis == "model" else f"_{axis}"
        fit_on, groups, runs, fpt = lc_fitter(points, axis, False)
        if any(f is None for f in fpt):
            why = f"compute axis {axis!r} unknown for some runs (no d_model/vocab_size in their config)"
            for key in (f"L_C{suffix}", f"L_C{suffix}_E"):
                nan = {"alpha": math.nan, "x_c": math.nan}
                fits[key] = FitResult("power_law", nan, 0, 2, underdetermined=True, reason=why)
                for _ in range(n_boot):
                    tick()
            continue
        frontiers[axis] = frontier(
            [(runs[g[0]].run, fpt[g[0]], mean_curve([runs[j] for j in g])) for g in groups]
        )
        for with_e in (False, True):
            key = f"L_C{suffix}" + ("_E" if with_e else "")
            stage(f"{arch} {key}")
            fit_on = lc_fitter(points, axis, with_e)[0]
            fits[key] = bootstrap_groups(fit_on, groups, n_boot, fit_rng(seed, arch, key), tick)
            fits[key].note = f"C = {COMPUTE_AXES[axis]}; frontier of every validation point"
    stage(f"{arch} chinchilla")
    runs = [r for p in points for r in p.runs]
    groups = [np.array([runs.index(r) for r in p.runs]) for p in points]
    nd_loss = (
        [r.non_embedding_params for r in runs],
        [r.tokens for r in runs],
        [r.final_valid_loss for r in runs],
    )
    fits["chinchilla"] = fit_chinchilla_bootstrap(*nd_loss, n_boot=n_boot, n_starts=n_starts, groups=groups,
                                                  rng=fit_rng(seed, arch, "chinchilla"), tick=tick)  # fmt: skip
    fits["L_N_surface"] = surface_law_n(fits["chinchilla"])
    stage(f"{arch} isoflop")
    iso = isoflop(
        [p.n for p in points],
        [p.tokens for p in points],
        [p.loss for p in points],
        [p.runs[0].flops_per_token for p in points],
        n_boot=n_boot,
        rng=fit_rng(seed, arch, "isoflop"),
    )
    for _ in range(n_boot):
        tick()
    return ArchFit(arch, kept, fits, frontiers.get("model", []), records, nothing, other_lr, unknown, scan,
                   frontiers, iso)  # fmt: skip


def fit_sweep(
    sweep_dir: str | Path,
    n_boot: int = 400,
    seed: int = 0,
    n_starts: int | None = 64,
    unigram_entropy: float | None = None,
    progress: bool = True,
) -> SweepFit:
    """Fit every architecture of a sweep. ``unigram_entropy`` (nats) is used for records that do not carry their
    own (written before the field existed); ``progress`` prints a line to stderr every ~10 s of bootstrap."""
    loaded = load_sweep(sweep_dir)
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
    archs = {
        a: fit_arch(rs, n_boot, seed, n_starts, unigram_entropy, bar) for a, rs in sorted(by_arch.items())
    }
    if bar is not None:
        bar.finish()
    sweep = SweepFit(Path(sweep_dir), loaded.skipped, {a: af for a, af in archs.items() if af.records})
    sweep.unfitted = {a: af for a, af in archs.items() if not af.records}
    if not sweep.archs:
        raise ValueError(
            f"{sweep_dir}: every run learned nothing (final loss >= unigram entropy): nothing to fit"
        )
    plan = Path(sweep_dir) / PLAN_FILE
    if plan.is_file():  # the grid's full list: unfinished runs that never started count as missing too
        planned = [r["name"] for r in json.loads(plan.read_text())["runs"]]
        done = {r.run for r in loaded.records}
        sweep.planned, sweep.skipped = len(planned), [n for n in planned if n not in done]
    sweep.settings = {"n_boot": n_boot, "seed": seed, "n_starts": n_starts, "extrapolate": EXTRAPOLATE,
                      "unigram_entropy_fallback": unigram_entropy}  # fmt: skip
    names = sorted(archs, key=lambda a: (a == REFERENCE_ARCH, a))  # the reference goes second in each pair
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = archs[a].fits.get("L_C"), archs[b].fits.get("L_C")
            if fa is None or fb is None or fa.underdetermined or fb.underdetermined:
                continue
            at, rng = comparison_window(archs[a].compute_range, archs[b].compute_range)
            sweep.comparisons.append(compare_curves(a, fa, b, fb, at, rng))
            matched = match_points(archs[a].points, archs[b].points)
            paired = paired_compare(
                a, b, matched, lc_fit_points, at, rng, n_boot, fit_rng(seed, a, b, "paired")
            )
            if paired is not None:
                sweep.comparisons.append(paired)
    if REFERENCE_ARCH in archs and archs[REFERENCE_ARCH].records:
        ref = min(archs[REFERENCE_ARCH].records, key=lambda r: r.final_valid_loss)
        for a in names:
            if a != REFERENCE_ARCH and archs[a].records:
                best = min(archs[a].records, key=lambda r: r.final_valid_loss)
                sweep.plateaus[a] = position_plateau([best], [ref], sweep_dir=sweep_dir, seed=seed)
    return sweep


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


def sweep_to_dict(sweep: SweepFit) -> dict[str, Any]:
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
    return out


def run_fit(
    sweep_dir: str | Path,
    n_boot: int = 400,
    seed: int = 0,
    out_dir: str | Path | None = None,
    unigram_entropy: float | None = None,
) -> dict[str, Any]:
    """Fit a sweep and write ``fit.json`` into ``out_dir`` (default SWEEP_DIR); returns the same dict."""
    out = sweep_to_dict(fit_sweep(sweep_dir, n_boot, seed, unigram_entropy=unigram_entropy))
    save_json_atomic(Path(sweep_dir if out_dir is None else out_dir) / "fit.json", out)
    return out
