"""The report's sections on how the fits were made: runs left out, the learning-rate scan, seeds, L(N) from the
surface, compute three ways, IsoFLOP profiles, and how each interval was made; each returns markdown lines.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.scaling.analyses.arch_fit import ArchFit
from pipeline.scaling.analyses.learned_nothing import old_rule_runs
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.fits.compute_axes import COMPUTE_AXES
from pipeline.scaling.fits.laws import FitResult
from pipeline.scaling.fits.points import record_lr


def _g(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _with_ci(f: FitResult | None, k: str) -> str:
    if f is None or f.underdetermined:
        return "-"
    ci = f.ci.get(k)
    return _g(f.params[k]) + (f" [{_g(ci[0])}, {_g(ci[1])}]" if ci else "")


def left_out_section(sweep: SweepFit) -> list[str]:
    md = ["## Runs left out of the fits", ""]
    fallback = sweep.settings.get("unigram_entropy_fallback")
    every = {**sweep.archs, **sweep.unfitted}
    total = sum(len(af.learned_nothing) for af in every.values())
    unknown = sum(af.entropy_unknown for af in every.values())
    runs = sum(len(af.all_records) for af in every.values())
    old_rule = sum(old_rule_runs(af.all_records, fallback) for af in every.values())
    md.append(
        f"**{total} of {runs} runs learned nothing**: their final valid loss is at or above the train-unigram "
        "cross-entropy on the validation targets (`unigram_xent`: the loss of a model that learned the train "
        "token frequencies and nothing else), so they carry no information about scaling and are kept out of "
        "every fit."
    )
    if old_rule:
        md.append(
            f"{old_rule} records predate `unigram_xent` and were judged by the old, lower bar, the validation "
            "targets' own unigram entropy (it excludes runs that beat a frequency-only model): "
            "`pipeline scaling rescore SWEEP_DIR` adds the field from their data."
        )
    if fallback is not None:
        md.append(f"For records without their own entropy the value given on the command line, {fallback:.4g} "
                  "nats, was used.")  # fmt: skip
    if unknown:
        md.append(
            f"{unknown} runs have no unigram entropy recorded (records written before the field existed, and none "
            "given with `--unigram-entropy`): they were not checked and stay in the fits."
        )
    md += [
        "",
        "| arch | runs | learned nothing | other learning rates (not fitted) | fitted |",
        "|---|---|---|---|---|",
    ]
    for a, af in every.items():
        flagged = ", ".join(f"`{r.run}` ({r.final_valid_loss:.3f})" for r in af.learned_nothing) or "-"
        md.append(f"| {a} | {len(af.all_records)} | {len(af.learned_nothing)}: {flagged} | {len(af.other_lr)} | "
                  f"{len(af.records)} |")  # fmt: skip
    if sweep.unfitted:
        md += ["", f"Not fitted at all (every run learned nothing): {', '.join(sweep.unfitted)}."]
    return [*md, ""]


def lr_section(sweep: SweepFit) -> list[str]:
    md = ["## Learning-rate scan", ""]
    scanned = {
        a: af.lr_scan for a, af in sweep.archs.items() if af.lr_scan is not None and af.lr_scan.scanned
    }
    if not scanned:
        rates = sorted({r.lr or r.config.get("optim", {}).get("lr") or math.nan for af in sweep.archs.values()
                        for r in af.all_records})  # fmt: skip
        md.append(
            f"Every size was trained at one learning rate ({', '.join(_g(v) for v in rates)}): the rate was not "
            "tuned per size, so a size's loss may reflect a rate that suits it worse than its neighbours'."
        )
        return [*md, ""]
    md.append("Mean final valid loss over seeds per size and learning rate, at the largest budget scanned with "
              "several rates; **bold** = the size's best rate (compared on the seeds all rates ran), the only "
              "one the fits use. Runs that learned nothing are in the scan (they lose) but not in the fits.")  # fmt: skip
    for a, scan in scanned.items():
        flat = {(r.non_embedding_params, r.tokens, record_lr(r)) for r in sweep.archs[a].learned_nothing}
        lrs = sorted({lr for row in scan.loss.values() for lr in row})
        md += ["", f"**{a}**", "", "| N | D | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best at the scan's edge |",
               "|---|---|" + "---|" * len(lrs) + "---|"]  # fmt: skip
        for n, row in scan.loss.items():
            cells = []
            for lr in lrs:
                if lr not in row:
                    cells.append("-")
                    continue
                text = f"{row[lr][0]:.3f}" + (f" ({row[lr][1]} seeds)" if row[lr][1] > 1 else "")
                text += " (nothing learned)" if (n, scan.tokens[n], lr) in flat else ""
                cells.append(f"**{text}**" if lr == scan.best[n] else text)
            md.append(
                f"| {n:,} | {scan.tokens[n]:,} | " + " | ".join(cells) + f" | {scan.at_edge.get(n) or '-'} |"
            )
    edges = [f"{a} at N = {n:,} ({edge}: {_g(s.best[n])})" for a, s in scanned.items() for n, edge in s.at_edge.items()
             if edge]  # fmt: skip
    if edges:
        md += ["", f"**Best rate at the edge of its scan**: {'; '.join(edges)}. The optimum may lie beyond it, so "
               "these sizes' losses are hints until one more rate on that side is run."]  # fmt: skip
    return [*md, ""]


def seeds_section(sweep: SweepFit) -> list[str]:
    md = ["## Seeds", ""]
    multi = [(a, p) for a, af in sweep.archs.items() for p in af.points if p.n_seeds > 1]
    if not multi:
        md.append("One seed per point: the seed-to-seed spread is not measured, so the intervals cannot separate "
                  "seed noise from lack of fit.")  # fmt: skip
        return [*md, ""]
    md += ["Fits use the mean over seeds; the bootstrap resamples points, then seeds within each.", "",
           "| arch | N | D | seeds | mean final loss | sd over seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
    md += [
        f"| {a} | {p.n:,} | {p.tokens:,} | {p.n_seeds} | {p.loss:.4f} | {p.spread:.4f} |" for a, p in multi
    ]
    return [*md, ""]


def surface_n_section(sweep: SweepFit) -> list[str]:
    md = ["## L(N) from the L(N, D) surface (identified)", "",
          "alpha_N and E from the Chinchilla fit: L(N, D -> inf) = E + A/N^alpha_N. Unlike the L(N) tables above, "
          "which fit one budget per size (labelled fixed D) and so mostly measure how close each size is to the "
          "data floor, this exponent is identified: D is in the fit.", "",
          "| arch | alpha_N | E | points | interval | note |", "|---|---|---|---|---|---|"]  # fmt: skip
    for a, af in sweep.archs.items():
        f = af.fits.get("L_N_surface")
        if f is None or f.underdetermined:
            md.append(f"| {a} | - | - | - | - | underdetermined: {f.reason if f else 'no runs'} |")
            continue
        note = []
        if f.params["E"] < 1e-6 or f.ci.get("E", (1.0,))[0] < 1e-6:
            note.append(
                "E at its bound 0: no loss floor within the data, so alpha_N describes the whole loss, "
                "not a reducible part"
            )
        ci = f.ci.get("alpha")
        if ci and ci[1] > 3 * ci[0] > 0:
            note.append("interval spans more than 3x")
        md.append(f"| {a} | {_with_ci(f, 'alpha')} | {_with_ci(f, 'E')} | {f.n_points} | {f.interval} | "
                  f"{'; '.join(note)} |")  # fmt: skip
    return [*md, ""]


def compute_section(sweep: SweepFit) -> list[str]:
    md = ["## L(C) exponents on three compute axes", "",
          "The same frontier (every validation point of every run) on three definitions of C: "
          + "; ".join(f"`{k}` = {v}" for k, v in COMPUTE_AXES.items())
          + ". Only the `6N` column compares with Kaplan et al.'s alpha_C (0.050) and other 6N-based results.", "",
          "| arch | " + " | ".join(f"alpha_C ({k}) | alpha_C with E ({k})" for k in COMPUTE_AXES) + " |",
          "|---|" + "---|---|" * len(COMPUTE_AXES)]  # fmt: skip
    for a, af in sweep.archs.items():
        cells = []
        for axis in COMPUTE_AXES:
            key = "L_C" if axis == "model" else f"L_C_{axis}"
            cells += [_with_ci(af.fits.get(key), "alpha"), _with_ci(af.fits.get(key + "_E"), "alpha")]
        md.append(f"| {a} | " + " | ".join(cells) + " |")
    return [*md, ""]


def _isoflop_lines(a: str, af: ArchFit) -> list[str]:
    iso = af.isoflop
    if iso is None:
        return [f"- **{a}**: no runs."]
    if not iso.profiles:
        return [f"- **{a}**: not fitted: {iso.reason}."]
    ci = lambda c: f" [{_g(c[0])}, {_g(c[1])}]" if c else ""  # noqa: E731
    head = f"- **{a}**: " + (
        f"not determined: {iso.reason}." if iso.underdetermined else
        f"N* ~ C^{_g(iso.exponent_n)}{ci(iso.exponent_n_ci)}, D* ~ C^{_g(iso.exponent_d)}{ci(iso.exponent_d_ci)} "
        f"({iso.interval}, {iso.n_boot_ok}/{iso.n_boot} resamples; {'; '.join(iso.notes)}).")  # fmt: skip
    rows = [
        "",
        "  | C (FLOPs) | sizes | N* | N* 95 % CI | D* | minimum inside the sizes |",
        "  |---|---|---|---|---|---|",
    ]
    for p in iso.profiles:
        rows.append(f"  | {_g(p.compute)} | {len(p.log_n)} | {_g(p.n_opt)} | {ci(p.n_opt_ci) or '-'} | "
                    f"{_g(p.d_opt)} | {'yes' if p.inside else 'no (bound only)'} |")  # fmt: skip
    return [head, *rows, ""]


def isoflop_section(sweep: SweepFit, figure: str | None = None) -> list[str]:
    md = ["## IsoFLOP profiles (Hoffmann et al. Approach 2)", "",
          "At each compute budget (model FLOPs), every size's final losses are interpolated to that compute in "
          "(log C, log L) and a parabola in log N is fitted; its minimum is N*(C) and D*(C) = C / FLOPs per token "
          "of N*. Needs >= 4 budgets with >= 5 sizes each.", ""]  # fmt: skip
    for a, af in sweep.archs.items():
        md += _isoflop_lines(a, af)
    if figure:
        md += [f"![IsoFLOP profiles]({figure})", ""]
    return [*md, ""]


def intervals_section(sweep: SweepFit) -> list[str]:
    used = sorted({f.interval for af in sweep.archs.values() for f in af.fits.values() if f.interval})
    return [
        "## How the intervals were made", "",
        f"95 % intervals from {sweep.settings.get('n_boot')} resamples per fit (seed {sweep.settings.get('seed')}). "
        "L(N) fits to points use a studentized residual bootstrap (leverage-adjusted residuals, t* quantiles); "
        "frontier and surface fits resample points (and seeds within points) and use BCa (bias correction and "
        "a leave-one-point-out jackknife acceleration); IsoFLOP exponents resample the parabolas' residuals "
        "(percentile). Methods in use: " + ", ".join(used) + ".",
        "Each architecture and each law draws from its own random stream, so the two sides of a comparison are "
        "resampled independently (design: independent). Where two architectures' runs are matched (same d_model, "
        "n_layers, budget, learning rate and seed: the same batches), the comparison is repeated with both sides "
        "refitted on the same resampled points and seeds (design: paired), which cancels their shared data noise.", "",
    ]  # fmt: skip


def analysis_sections(sweep: SweepFit, out_dir: Path | None = None) -> list[str]:
    """Every section above; with ``out_dir``, the IsoFLOP figure is drawn there and linked."""
    figure = None
    if out_dir is not None:
        from pipeline.scaling.report.isoflop_figure import (
            draw_isoflop,  # matplotlib only when a figure is drawn
        )

        figure = draw_isoflop(sweep, Path(out_dir))
    return [
        *left_out_section(sweep),
        *lr_section(sweep),
        *seeds_section(sweep),
        *surface_n_section(sweep),
        *compute_section(sweep),
        *isoflop_section(sweep, figure),
        *intervals_section(sweep),
    ]
