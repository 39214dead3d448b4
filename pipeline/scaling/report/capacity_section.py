"""The report's "Capacity law" section: N*(d) per architecture with its CI or bound, the law
N* = c d^gamma, bits of recall per state float, the learning-rate curves with edge flags, pairs versus distance,
accuracy by query distance, and Zoology's published accuracy where a cell matches (labelled as published)."""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.scaling.analyses.capacity import ArchCapacity, Capacity, WidthCapacity, curve_lengths
from pipeline.scaling.analyses.pairs_distance import RATIO
from pipeline.scaling.fits.capacity_law import LOWER_BOUND, UPPER_BOUND
from pipeline.scaling.report.capacity_figures import draw_capacity_figures
from pipeline.scaling.report.published_recall import SOURCE, zoology_match


def _g(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def n_star_text(w: WidthCapacity) -> str:
    """`5.2 [4.1, 6.3]`, or a bound said as such: `≥ 32 (never below the threshold)`."""
    s = w.n_star
    if s.kind == LOWER_BOUND:
        return f"≥ {s.value:g} (lower bound: never below the threshold in the grid)"
    if s.kind == UPPER_BOUND:
        return f"< {s.value:g} (upper bound: below the threshold already at the smallest N)"
    return f"{_g(s.value)} [{_g(s.ci[0])}, {_g(s.ci[1])}]" + (
        f" ({s.censored:.0%} of resamples at a bound)"
        if s.censored > 0
        else ""  # NaN (no bootstrap): nothing
    )


def _bits_text(w: WidthCapacity) -> str:
    sign = {LOWER_BOUND: "≥ ", UPPER_BOUND: "< "}.get(w.n_star.kind, "")
    return sign + _g(w.bits_per_float)


def _edge(w: WidthCapacity, x: str = "N") -> str:
    """Which N's best rate sits at the scan's edge; one flag, not one per N, when every N's best is the same edge
    rate (always so for copy, which chooses one rate per width)."""
    flagged = {n: c for n, c in sorted(w.rates.items()) if c.at_edge in ("low", "high")}
    if not flagged:
        return "-"
    one_rate = (
        len({c.best_lr for c in w.rates.values()}) == 1 and len({c.at_edge for c in w.rates.values()}) == 1
    )
    if one_rate and len(w.rates) > 1:
        (c, *_) = flagged.values()
        return f"{c.at_edge} at every {x} ({c.best_lr:g})"
    return "; ".join(f"N={n}: {c.at_edge}" for n, c in flagged.items())


def _arch_lines(cap: Capacity, a: str, ac: ArchCapacity) -> list[str]:
    x = "N" if cap.task == "mqar" else "length"
    rows = [
        f"### {a}",
        "",
        f"| d | state floats | state bits | N* [95 % CI] | bits recalled per state float | accuracy by {x} "
        "(best over rates; seeds) | best rate at the scan's edge |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, w in sorted(ac.widths.items()):
        acc = ", ".join(f"{n}: {v:.3f} ({w.seeds[n]})" for n, v in w.accuracy.items())
        rows.append(f"| {d} | {w.state_floats:,} | {w.state_bits:,} | {n_star_text(w)} | {_bits_text(w)} | "
                    f"{acc} | {_edge(w, x)} |")  # fmt: skip
    law = ac.law
    rows.append("")
    if math.isfinite(law.gamma):
        rows.append(f"Law: N* = {law.c:.3g} · d^γ with **γ = {law.gamma:.3g} [{_g(law.gamma_ci[0])}, "
                    f"{_g(law.gamma_ci[1])}]** (95 % CI), fitted on d = {', '.join(map(str, law.widths))}.")  # fmt: skip
        if law.one_interval:
            lo, hi = law.one_interval
            rows.append(f"Every fitted N* lies between the grid's N = {lo:g} and {hi:g}: the law only interpolates "
                        f"inside that one interval, so γ says how accuracy at N = {lo:g} and {hi:g} moves with width, "
                        "not where the state runs out. It is not a measured capacity exponent; a grid with N "
                        "inside and beyond that interval, or models trained past it, is needed.")  # fmt: skip
    else:
        rows.append(f"Law: not fitted (N* interpolated at {len(law.widths)} width(s); two are needed).")
    if law.excluded:
        rows.append("Widths with a bound only (not points on the law): "
                    + ", ".join(f"d={d} ({k.replace('_', ' ')})" for d, k in sorted(law.excluded.items())) + ".")  # fmt: skip
    published = _published(cap, a, ac)
    if published:
        rows += ["", f"Published, for comparison ({SOURCE}; not this sweep's numbers):", "", *published]
    return [*rows, ""]


def _published(cap: Capacity, a: str, ac: ArchCapacity) -> list[str]:
    if cap.task != "mqar":
        return []
    on_curve = curve_lengths(cap.cells)  # the L of each N on the curve, as the capacity analysis took it
    out = []
    for d, w in sorted(ac.widths.items()):
        for n, ours in w.accuracy.items():
            match = zoology_match(a, cap.vocab_size, on_curve[n], n, d) if n in on_curve else None
            if match:
                out.append(f"- (L, N) = ({on_curve[n]}, {n}), d = {d}: published {match[0]} ≈ {match[1]:.2f}; "
                           f"this sweep's {a} {ours:.3f}")  # fmt: skip
    return out


def _rate_lines(cap: Capacity) -> list[str]:
    rows = ["### Learning-rate curves", "",
            "Accuracy at every scanned rate (mean over the seeds run at it); the best is bold. An optimum at the "
            "scan's edge may lie outside it.", "",
            "| arch | d | N | accuracy by rate | edge |", "|---|---|---|---|---|"]  # fmt: skip
    for a, ac in cap.archs.items():
        for d, w in sorted(ac.widths.items()):
            for n, c in sorted(w.rates.items()):
                curve = ", ".join((f"**{lr:g}: {v:.3f}**" if lr == c.best_lr else f"{lr:g}: {v:.3f}")
                                  for lr, v in c.curve.items())  # fmt: skip
                rows.append(f"| {a} | {d} | {n} | {curve} | {c.at_edge or '-'} |")
    return [*rows, ""]


def _pairs_distance_lines(cap: Capacity) -> list[str]:
    if not cap.pairs_vs_distance:
        return []
    rows = ["### Pairs versus distance", "",
            "Method: best-over-rates accuracy per (L, N) cell; spread over L = mean over N of (max − min across L "
            "at that N); spread over N = mean over L of (max − min across N at that L). Failure tracks N when the "
            f"spread over N exceeds {RATIO:g}× the spread over L, L for the reverse, both otherwise.", "",
            "| arch | d | accuracy (L, N) | spread over L | spread over N | failure tracks |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for p in cap.pairs_vs_distance:
        cells = ", ".join(f"({length}, {n}): {v:.3f}" for (length, n), v in sorted(p.accuracy.items()))
        rows.append(
            f"| {p.arch} | {p.d} | {cells} | {_g(p.spread_over_l)} | {_g(p.spread_over_n)} | {p.tracks} |"
        )
    return [*rows, ""]


def _distance_lines(cap: Capacity) -> list[str]:
    if not any(ac.by_distance for ac in cap.archs.values()):
        return []
    rows = ["### Accuracy by query distance", "",
            "Query position minus its key's position, in log2 buckets; best-rate runs of every width and N summed.",
            "", "| arch | distance | answers | accuracy |", "|---|---|---|---|"]  # fmt: skip
    for a, ac in cap.archs.items():
        rows += [f"| {a} | {b['distance'][0]}–{b['distance'][1]} | {b['answers']:,} | {b['accuracy']:.3f} |"
                 for b in ac.by_distance]  # fmt: skip
    return [*rows, ""]


def capacity_section(cap: Capacity | None, out_dir: Path) -> list[str]:
    """The section's lines, drawing its figures into ``out_dir``; [] for a sweep without memory-task runs."""
    if cap is None:
        return []
    plots = draw_capacity_figures(cap, out_dir)
    task = "MQAR (multi-query associative recall)" if cap.task == "mqar" else "copy"
    unit = f"log2(V/2) = {cap.value_bits:.3g} bits a value" if cap.task == "mqar" else (
        f"log2(alphabet) = {cap.value_bits:.3g} bits a letter")  # fmt: skip
    chance = f"chance {cap.chance:.3g} (1/(V/2))" if cap.task == "mqar" else "chance ≈ 0 (exact match)"
    cells = ", ".join(f"({length}, {n})" for length, n in cap.cells)
    n = "N" if cap.task == "mqar" else "length"
    return [
        "## Capacity law",
        "",
        f"{task}, V = {cap.vocab_size}, {cap.n_records} runs; (L, {n}) cells: {cells}. N* is the largest {n} at "
        f"which accuracy is ≥ {cap.threshold:g}, interpolated in log {n}; accuracy at each {n} is the best over the scanned "
        "learning rates (Zoology's convention), the mean over seeds at that rate; the 95 % CI resamples seeds and "
        f"then answers. Bits recalled per state float = N* · {unit} / the model's state floats (its own count at "
        f"the run's L). Accuracy {chance}. A width that never falls below the threshold gives a lower bound, one "
        "below it everywhere an upper bound; neither is a point on the law.",
        "",
        f"![accuracy against N]({plots['accuracy']})",
        "",
        f"![N*(d)]({plots['nstar']})",
        "",
        f"![accuracy against state bits]({plots['state_bits']})",
        "",
        *[line for a, ac in cap.archs.items() for line in _arch_lines(cap, a, ac)],
        *_rate_lines(cap),
        *_pairs_distance_lines(cap),
        *_distance_lines(cap),
    ]
