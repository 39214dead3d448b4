"""Fit every architecture of a sweep, then write ``fit.json``, PNG plots and a ``report.md`` that says what the
numbers mean and where the data is too thin to say anything.

What is fitted to what (chosen here once, stated in the report):
- L(N): per distinct non-embedding size, the ``best_valid_loss`` of its run with the most tokens (the least
  data-limited loss that size reached; Kaplan et al. 2020 fit converged/early-stopped loss). The bootstrap resamples
  these runs only: resampling all runs would swap a size's largest-budget run for a smaller-budget one and turn
  the spread of D into fake uncertainty in alpha_N.
- L(C): the run-level compute frontier of ``final_valid_loss`` (the loss a run actually ended at for its compute).
- L(N, D): every run, D = target tokens trained on (repeats included), loss = ``final_valid_loss``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.fit import (
    Crossing,
    FitResult,
    Plateau,
    bootstrap,
    compare_curves,
    compute_frontier,
    fit_chinchilla_bootstrap,
    fit_power_law,
    position_plateau,
)
from pipeline.scaling.records import RunRecord, load_sweep, save_json_atomic

PLAN_FILE = "plan.json"  # `pipeline sweep` lists every run of the grid here
REFERENCE_ARCH = "transformer"  # the curve the recurrent architectures are compared against
# crossings are searched this factor beyond the measured compute range, and flagged if found there
EXTRAPOLATE = 10.0


@dataclass
class ArchFit:
    arch: str
    records: list[RunRecord]
    fits: dict[str, FitResult]  # "L_N", "L_N_E", "L_C", "L_C_E", "chinchilla"
    frontier: list[RunRecord]

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


def largest_budget_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Per non-embedding size, its run with the most tokens (ties: the lower loss), ordered by size."""
    top: dict[int, RunRecord] = {}
    for r in records:
        old = top.get(r.non_embedding_params)
        if old is None or (r.tokens, -r.best_valid_loss) > (old.tokens, -old.best_valid_loss):
            top[r.non_embedding_params] = r
    return [top[n] for n in sorted(top)]


def points_by_size(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(N, best_valid_loss) of each size's largest-budget run: the points L(N) is fitted to."""
    runs = largest_budget_runs(records)
    n = np.array([r.non_embedding_params for r in runs], dtype=float)
    return n, np.array([r.best_valid_loss for r in runs])


def _frontier(records: Sequence[RunRecord]) -> list[RunRecord]:
    idx = compute_frontier([r.compute for r in records], [r.final_valid_loss for r in records])
    return [records[i] for i in idx]


def fit_arch(
    records: list[RunRecord], n_boot: int = 400, seed: int = 0, n_starts: int | None = 64
) -> ArchFit:
    """All fits for one architecture; bootstraps resample runs (for L(C), then redo the frontier selection)."""
    by_size = largest_budget_runs(records)

    def law_n(with_e: bool):
        return lambda i: fit_power_law(*points_by_size([by_size[j] for j in i]), with_e=with_e)

    def law_c(with_e: bool):
        def fit_on(i: np.ndarray) -> FitResult:
            front = _frontier([records[j] for j in i])
            c, loss = [r.compute for r in front], [r.final_valid_loss for r in front]
            return fit_power_law(c, loss, with_e=with_e)

        return fit_on

    n = len(records)
    nd_loss = [[r.non_embedding_params for r in records], [r.tokens for r in records]]
    nd_loss.append([r.final_valid_loss for r in records])
    fits = {
        "L_N": bootstrap(law_n(False), len(by_size), n_boot, seed),
        "L_N_E": bootstrap(law_n(True), len(by_size), n_boot, seed),
        "L_C": bootstrap(law_c(False), n, n_boot, seed),
        "L_C_E": bootstrap(law_c(True), n, n_boot, seed),
        "chinchilla": fit_chinchilla_bootstrap(*nd_loss, n_boot=n_boot, seed=seed, n_starts=n_starts),
    }
    return ArchFit(records[0].arch, records, fits, _frontier(records))


def fit_sweep(sweep_dir: str | Path, n_boot: int = 400, seed: int = 0, n_starts: int | None = 64) -> SweepFit:
    loaded = load_sweep(sweep_dir)
    if not loaded.records:
        raise ValueError(f"{sweep_dir}: no finished runs (no */result.json); skipped: {loaded.skipped}")
    by_arch: dict[str, list[RunRecord]] = {}
    for r in loaded.records:
        by_arch.setdefault(r.arch, []).append(r)
    archs = {a: fit_arch(rs, n_boot, seed, n_starts) for a, rs in sorted(by_arch.items())}
    sweep = SweepFit(Path(sweep_dir), loaded.skipped, archs)
    plan = Path(sweep_dir) / PLAN_FILE
    if plan.is_file():  # the grid's full list: unfinished runs that never started count as missing too
        planned = [r["name"] for r in json.loads(plan.read_text())["runs"]]
        done = {r.run for r in loaded.records}
        sweep.planned, sweep.skipped = len(planned), [n for n in planned if n not in done]
    sweep.settings = {"n_boot": n_boot, "seed": seed, "n_starts": n_starts, "extrapolate": EXTRAPOLATE}
    names = sorted(archs, key=lambda a: (a == REFERENCE_ARCH, a))  # the reference goes second in each pair
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = archs[a].fits["L_C"], archs[b].fits["L_C"]
            if fa.underdetermined or fb.underdetermined:
                continue
            (lo_a, hi_a), (lo_b, hi_b) = archs[a].compute_range, archs[b].compute_range
            rng = (min(lo_a, lo_b) / EXTRAPOLATE, max(hi_a, hi_b) * EXTRAPOLATE)
            sweep.comparisons.append(compare_curves(a, fa, b, fb, min(hi_a, hi_b), rng))
    if REFERENCE_ARCH in archs:
        ref = min(archs[REFERENCE_ARCH].records, key=lambda r: r.final_valid_loss)
        for a in names:
            if a != REFERENCE_ARCH:
                best = min(archs[a].records, key=lambda r: r.final_valid_loss)
                sweep.plateaus[a] = position_plateau([best], [ref])
    return sweep


def sweep_to_dict(sweep: SweepFit) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sweep_dir": str(sweep.sweep_dir),
        "n_runs": sum(len(a.records) for a in sweep.archs.values()),
        "planned_runs": sweep.planned,
        "skipped_runs": sweep.skipped,
        "settings": sweep.settings,
        "archs": {},
        "comparisons": [c.to_dict() for c in sweep.comparisons],
        "plateaus": {
            a: {"vs": REFERENCE_ARCH, "position": p.position, "reason": p.reason}
            for a, p in sweep.plateaus.items()
        },
    }
    for name, af in sweep.archs.items():
        out["archs"][name] = {
            "n_runs": len(af.records),
            "non_embedding_sizes": af.sizes,
            "token_budgets": sorted({r.tokens for r in af.records}),
            "max_epochs": max(r.epochs for r in af.records),
            "compute_range": list(af.compute_range),
            "fits": {k: f.to_dict() for k, f in af.fits.items()},
            "frontier": [
                {"run": r.run, "compute": r.compute, "loss": r.final_valid_loss} for r in af.frontier
            ],
        }
    return out


def run_fit(sweep_dir: str | Path, n_boot: int = 400, seed: int = 0) -> dict[str, Any]:
    """Fit a sweep and write ``SWEEP_DIR/fit.json``; returns the same JSON-serialisable dict."""
    out = sweep_to_dict(fit_sweep(sweep_dir, n_boot, seed))
    save_json_atomic(Path(sweep_dir) / "fit.json", out)
    return out


# ---------------------------------------------------------------- report.md
def _g(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _param(f: FitResult, k: str) -> str:
    ci = f.ci.get(k)
    return _g(f.params[k]) + (f" [{_g(ci[0])}, {_g(ci[1])}]" if ci else "")


def _law_table(sweep: SweepFit, key: str, x_name: str, names: Sequence[str]) -> list[str]:
    rows = [
        f"| arch | {' | '.join(names)} | points | dof | bootstrap ok | note |",
        "|" + "---|" * (len(names) + 5),
    ]
    for a, af in sweep.archs.items():
        f = af.fits[key]
        if f.underdetermined:
            rows.append(
                f"| {a} | " + " | ".join("-" for _ in names) + f" | {f.n_points} | - | - | "
                f"underdetermined: {f.reason} |"
            )
            continue
        note = []
        if f.dof == 0:
            note.append("exact fit through the points: CI reflects run resampling only")
        if f.params["alpha"] <= 0:
            note.append(f"loss does not fall with {x_name}")
        elif "alpha" in f.ci and f.ci["alpha"][0] <= 0:
            note.append(f"CI includes alpha <= 0: no clear evidence that loss falls with {x_name}")
        if f.n_boot and f.n_boot_ok < 0.9 * f.n_boot:
            note.append(f"{f.n_boot - f.n_boot_ok} resamples underdetermined")
        cells = " | ".join(_param(f, k) for k in names)
        rows.append(
            f"| {a} | {cells} | {f.n_points} | {f.dof} | {f.n_boot_ok}/{f.n_boot} | {'; '.join(note)} |"
        )
    return rows


def _frontier_loss(af: ArchFit, compute: float) -> float:
    """The lowest final loss among an architecture's runs with compute <= ``compute`` (the measured frontier)."""
    losses = [r.final_valid_loss for r in af.records if r.compute <= compute * (1 + 1e-9)]
    return min(losses, default=math.nan)


def _runs_table(sweep: SweepFit) -> list[str]:
    """Final valid loss of every run: one row per (architecture, size), one column per token count."""
    records = [r for af in sweep.archs.values() for r in af.records]
    budgets = sorted({r.tokens for r in records})
    hours = sum(r.wall_time_s for r in records) / 3600
    rows = [
        f"### Runs: final valid loss ({len(records)} runs, {hours:.2g} h of training wall time in total)",
        "",
        "| arch | N (non-embedding) | " + " | ".join(f"D = {d:,}" for d in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for a, af in sweep.archs.items():
        for n in af.sizes:
            loss = {r.tokens: r.final_valid_loss for r in af.records if r.non_embedding_params == n}
            cells = " | ".join(f"{loss[d]:.3f}" if d in loss else "-" for d in budgets)
            rows.append(f"| {a} | {n:,} | {cells} |")
    epochs = ", ".join(f"{d:,}: {max(r.epochs for r in records if r.tokens == d):.2f}" for d in budgets)
    return [*rows, "", f"Epochs over the training corpus per token count: {epochs}."]


def _markdown(sweep: SweepFit, plots: dict[str, str]) -> str:
    n_runs = sum(len(a.records) for a in sweep.archs.values())
    s = sweep.settings
    if sweep.planned is None:
        status = f"{len(sweep.skipped)} run directories without a result yet were skipped."
    else:
        missing = f" (not finished yet: {', '.join(sweep.skipped)})" if sweep.skipped else ""
        status = f"the grid plans {sweep.planned} runs, so {len(sweep.skipped)} have no result yet{missing}."
    md = [
        "# Scaling-law report",
        "",
        f"Sweep `{sweep.sweep_dir}`: {n_runs} finished runs over {len(sweep.archs)} architectures "
        f"({', '.join(sweep.archs)}); {status} Losses are validation cross-entropy in nats per target token. "
        f"Intervals are 95 % percentile bootstrap CIs from {s['n_boot']} resamples of runs (seed {s['seed']}).",
        "",
        "## What the data can support",
        "",
    ]
    for a, af in sweep.archs.items():
        sizes = af.sizes
        span = sizes[-1] / sizes[0]
        budgets = sorted({r.tokens for r in af.records})
        line = f"- **{a}**: {len(af.records)} runs, {len(sizes)} sizes spanning {span:.3g}x in N, {len(budgets)} token budgets."
        if len(sizes) < 5 or span < 30:
            line += " Too few sizes (or too narrow a span) to pin an exponent down: treat alpha as indicative only."
        repeated = [r for r in af.records if r.epochs > 1]
        if repeated:
            line += (
                f" **Data was repeated** in {len(repeated)} runs (up to {max(r.epochs for r in repeated):.3g} "
                "epochs): D counts repeated tokens, which are worth less than fresh ones (Muennighoff et al. "
                "2023), so the data term B/D^beta and L(C) at large budgets are optimistic."
            )
        top = {max(r.tokens for r in af.records if r.non_embedding_params == n) for n in sizes}
        if len(top) > 1:
            line += (
                " Not every size reached the largest budget yet, so L(N) (lowest loss per size) compares sizes "
                "at different D: the larger-D sizes look better than N alone explains."
            )
        md.append(line)
    md += ["", *_runs_table(sweep)]
    md += [
        "",
        "## L(N) = (N_c / N)^alpha_N",
        "",
        "Fitted to each size's run with the most tokens (`best_valid_loss`, least data-limited), least squares on "
        "log loss; the bootstrap resamples those runs. Every model here is still data-limited at its largest budget, "
        "so this is L(N) at that D, not Kaplan's converged L(N). Doubling N multiplies the loss by 2^-alpha_N.",
        "",
        *_law_table(sweep, "L_N", "N", ("alpha", "x_c")),
        "",
        "With an irreducible term, L(N) = E + (N_c / N)^alpha_N (E bounded to [0, min loss)):",
        "",
        *_law_table(sweep, "L_N_E", "N", ("alpha", "x_c", "E")),
        "",
        f"![loss vs params]({plots['params']})",
        "",
        "## L(C) = (C_c / C)^alpha_C on the compute frontier",
        "",
        "C = the model's own training FLOPs per target token x tokens (not 6N: the LSTM recurrence and attention "
        "cost differ). Fitted to the runs on the lower envelope of `final_valid_loss` vs C.",
        "",
        *_law_table(sweep, "L_C", "C", ("alpha", "x_c")),
        "",
        *_law_table(sweep, "L_C_E", "C", ("alpha", "x_c", "E")),
        "",
        f"![loss vs compute]({plots['compute']})",
        "",
        "## Chinchilla L(N, D) = E + A/N^alpha + B/D^beta",
        "",
        "Huber loss (delta = 1e-3) on log-loss residuals, log-sum-exp parametrisation, L-BFGS-B from the "
        "Hoffmann et al. (2022) grid of initialisations, best kept. D = target tokens trained on.",
        "",
        *_law_table(sweep, "chinchilla", "N and D", ("alpha", "beta", "E", "A", "B")),
        "",
        "## Where the curves cross or diverge",
        "",
    ]
    if not sweep.comparisons:
        md.append("No pair of architectures has two L(C) fits that are determined: nothing to compare.")
    for c in sweep.comparisons:
        lo, hi = c.search_range
        measured = (lo * EXTRAPOLATE, hi / EXTRAPOLATE)
        if c.crossings:
            x = c.crossings[0]
            where = "inside" if measured[0] <= x <= measured[1] else "outside (extrapolated)"
            ci = f"[{_g(c.ci[0])}, {_g(c.ci[1])}]" if c.ci else "n/a"
            text = (
                f"the fitted L(C) curves cross at C = {_g(x)} FLOPs (95 % CI {ci}, over the "
                f"{c.frac_boot_crossing:.0%} of resamples that cross), {where} the measured range"
            )
        else:
            text = (
                f"no crossing in [{_g(lo)}, {_g(hi)}] FLOPs ({c.frac_boot_crossing:.0%} of resamples cross "
                "there)"
            )
        rci = f"[{_g(c.loss_ratio_ci[0])}, {_g(c.loss_ratio_ci[1])}]" if c.loss_ratio_ci else "n/a"
        la, lb = (_frontier_loss(sweep.archs[x], c.at_compute) for x in (c.arch_a, c.arch_b))
        md.append(
            f"- **{c.arch_a} vs {c.arch_b}**: {text}. At C = {_g(c.at_compute)} (largest compute both reached) "
            f"the fitted L_{c.arch_a} / L_{c.arch_b} = {_g(c.loss_ratio)} (95 % CI {rci}); > 1 means {c.arch_a} "
            f"is worse. Measured: the lowest loss with at most that compute is {_g(la)} ({c.arch_a}) vs "
            f"{_g(lb)} ({c.arch_b}), ratio {_g(la / lb)}."
        )
    md += ["", "## Loss by target position", "", f"![loss vs position]({plots['position']})", ""]
    if not sweep.plateaus:
        md.append(f"No `{REFERENCE_ARCH}` runs, so no position comparison.")
    for a, p in sweep.plateaus.items():
        where = (
            f"stops improving relative to {REFERENCE_ARCH} after target position {p.position}"
            if p.position is not None
            else "shows no plateau"
        )
        md.append(f"- **{a}** (its lowest-loss run vs {REFERENCE_ARCH}'s): {where} ({p.reason}).")
    if "ratio" in plots:
        md += [
            "",
            "Positions t are 0-based target indices. Plateau: rho(t) = smoothed log(L_arch(t) / L_ref(t)); t* is "
            "the last position where rho is within 10 % of its final rise above its minimum, so after t* extra "
            "target context helps the reference measurably more (see `position_plateau`). One run per side: no CI.",
            "",
            f"![position ratio]({plots['ratio']})",
        ]
    md += [
        "",
        "## Caveats",
        "",
        "- A percentile bootstrap over a handful of runs understates uncertainty; a fit with 0 degrees of freedom "
        "passes through its points exactly and says nothing about how well the law holds.",
        "- Crossings outside the measured compute range are extrapolations of the fitted laws, not observations.",
        "- The compute frontier uses final losses only (no intermediate checkpoints), so it is coarser than "
        "Kaplan et al.'s L(C_min).",
        "",
    ]
    return "\n".join(md)


def write_report(
    sweep_dir: str | Path, out_dir: str | Path | None = None, n_boot: int = 400, seed: int = 0
) -> Path:
    """Fit ``sweep_dir`` (also writing its fit.json), draw the PNGs and write report.md into ``out_dir``
    (default ``SWEEP_DIR``, next to the run directories); returns the report.md path."""
    sweep = fit_sweep(sweep_dir, n_boot, seed)
    save_json_atomic(Path(sweep_dir) / "fit.json", sweep_to_dict(sweep))
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    from pipeline.scaling.plots import draw_plots  # matplotlib only when a report is drawn, not for `fit`

    path.write_text(_markdown(sweep, draw_plots(sweep, out)))
    return path
