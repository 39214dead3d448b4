"""report.md's main sections: what the data can support, every run's loss, the fitted laws with their CIs,
where the curves cross, and the closing caveats. The rest of the report is in the other `*_section.py` modules;
`write.write_report` puts them in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.scaling.analyses.arch_fit import ArchFit
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.fits.crossing import EXTRAPOLATE
from pipeline.scaling.fits.laws import FitResult


def _g(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def unfinished_list(names: Sequence[str], shown: int = 10) -> str:
    """The planned runs without a record, all of them when few; else the first ``shown`` and a count, so a sweep
    cut short early (a 4,000-run grid with 20 done) does not bury the report under names (the whole list, with each
    run's state: `pipeline sweep --grid GRID --dry-run`)."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more (every run's state: `pipeline sweep --grid GRID --dry-run`)"


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
    records = [r for af in sweep.archs.values() for r in af.all_records]
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
            cells = []
            for d in budgets:  # the fitted runs' seed mean, else the best run that learned nothing, flagged
                fitted = [
                    r.final_valid_loss for r in af.records if (r.non_embedding_params, r.tokens) == (n, d)
                ]
                flat = [
                    r.final_valid_loss
                    for r in af.learned_nothing
                    if (r.non_embedding_params, r.tokens) == (n, d)
                ]
                cells.append(f"{np.mean(fitted):.3f}" + (f" ({len(fitted)} seeds)" if len(fitted) > 1 else "")
                             if fitted else f"{min(flat):.3f} (learned nothing)" if flat else "-")  # fmt: skip
            rows.append(f"| {a} | {n:,} | {' | '.join(cells)} |")
    epochs = ", ".join(f"{d:,}: {max(r.epochs for r in records if r.tokens == d):.2f}" for d in budgets)
    return [*rows, "", f"Epochs over the training corpus per token count: {epochs}."]


def main_sections(sweep: SweepFit, plots: dict[str, str]) -> list[str]:
    """From the title to the crossings (``plots``: the law figures' file names, keys "params" and "compute")."""
    n_runs = sum(len(a.all_records) for a in sweep.archs.values())
    s = sweep.settings
    if sweep.planned is None:
        status = f"{len(sweep.skipped)} run directories without a result yet were skipped."
    else:
        missing = f" (not finished yet: {unfinished_list(sweep.skipped)})" if sweep.skipped else ""
        status = f"the grid plans {sweep.planned} runs, so {len(sweep.skipped)} have no result yet{missing}."
    md = [
        "# Scaling-law report",
        "",
        f"Sweep `{sweep.sweep_dir}`: {n_runs} finished runs over {len(sweep.archs)} architectures "
        f"({', '.join(sweep.archs)}); {status} Losses are validation cross-entropy in nats per target token. "
        f"Intervals are 95 % CIs from {s['n_boot']} resamples per fit (seed {s['seed']}), each architecture "
        "resampled independently; see 'How the intervals were made' for the method of each fit.",
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
        "## L(N) at fixed D = (N_c / N)^alpha_N (fixed-D exponent)",
        "",
        "Fitted to each size's largest-budget point (`best_valid_loss`, every seed), least squares on log loss; "
        "studentized residual bootstrap. **These are fixed-D exponents**: every model here is still data-limited at "
        "its largest budget, so this is L(N) at that D, not Kaplan's converged L(N), and it mostly measures the "
        "data floor. The identified exponent is in 'L(N) from the L(N, D) surface' below.",
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
        "cost differ). Fitted to the lower envelope of every validation point of every run (the final point only "
        "for runs that recorded no curve); BCa bootstrap over points. Other compute axes: see 'L(C) exponents on "
        "three compute axes'.",
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
            f"- **{c.arch_a} vs {c.arch_b}** (resampling: {c.design}): {text}. At C = {_g(c.at_compute)} (largest compute both reached) "
            f"the fitted L_{c.arch_a} / L_{c.arch_b} = {_g(c.loss_ratio)} (95 % CI {rci}); > 1 means {c.arch_a} "
            f"is worse. Measured: the lowest loss with at most that compute is {_g(la)} ({c.arch_a}) vs "
            f"{_g(lb)} ({c.arch_b}), ratio {_g(la / lb)}."
        )
    return md


CAVEATS = [
    "## Caveats",
    "",
    "- Any bootstrap over a handful of points understates uncertainty somewhat; a fit with 0 degrees of freedom "
    "passes through its points exactly and says nothing about how well the law holds.",
    "- Crossings outside the measured compute range are extrapolations of the fitted laws, not observations.",
    "- Intermediate validation points lie mid-schedule (the learning rate not yet annealed), so the frontier "
    "they form is an upper bound on the loss a run trained for exactly that long would reach.",
]
