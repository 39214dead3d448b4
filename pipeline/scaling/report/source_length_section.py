"""The report's "Loss and BLEU by source length" section and figure (`analyses.source_length`): each
architecture's largest-compute run, one panel each, with the reference architecture's curve in grey."""

from __future__ import annotations

from pathlib import Path

from pipeline.scaling.analyses.source_length import MIN_PAIRS, Bucketed, source_lengths
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.records.run_files import RunFiles
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.report.figure_style import (
    BAND_ALPHA,
    REFERENCE_COLOR,
    arch_colors,
    legend_below,
    log_ticks,
    panel_grid,
    save,
    setup_matplotlib,
)


def _curve(ax, b: Bucketed, color, label: str, ls: str = "-", zorder: int = 3) -> None:
    mid = [(lo + hi) / 2 for lo, hi in b.edges]
    lo_ci, hi_ci = zip(*b.ci, strict=True)
    ax.fill_between(mid, lo_ci, hi_ci, color=color, alpha=BAND_ALPHA, lw=0, zorder=zorder - 2)
    ax.plot(mid, b.loss, color=color, marker="o", ms=3, ls=ls, lw=1.2, label=label, zorder=zorder)


def draw_source_length(found: list[Bucketed], out_dir: Path) -> str:
    """``loss_by_source_length.png`` (+ PDF): one panel per architecture's largest-compute run."""
    plt = setup_matplotlib()
    colors = arch_colors([b.arch for b in found])
    ref = next((b for b in found if b.arch == REFERENCE_ARCH), None)
    fig, axes = panel_grid(plt, len(found))
    for ax, b in zip(axes, found, strict=True):
        _curve(ax, b, colors[b.arch], "mean loss per bucket (band: 95 % CI over pairs)")
        if ref is not None and b is not ref:
            _curve(ax, ref, REFERENCE_COLOR, f"{REFERENCE_ARCH} ({ref.run})", ls="--", zorder=2)
        ax.set(xscale="log", title=f"{b.arch} ({b.run})", xlabel="source length (tokens, bucket middle)")
        ax.grid(True, which="major", alpha=0.3, lw=0.5)
    for ax in axes[:: min(3, len(axes))]:
        ax.set_ylabel("valid loss per target token")
    log_ticks(axes[0].xaxis, *axes[0].get_xlim())
    legend_below(fig, axes)
    fig.tight_layout()
    return save(fig, out_dir / "loss_by_source_length.png")


def source_length_lines(found: list[Bucketed], figure: str) -> list[str]:
    """The section's markdown lines (``figure``: the drawn figure's file name)."""
    lines = ["## Loss and BLEU by source length", "",
             "Each architecture's largest-compute run: token-weighted mean validation loss of the pairs whose source "
             f"length falls in each bucket, 95 % bootstrap CI over those pairs (buckets with >= {MIN_PAIRS} pairs). "
             "An encoder-decoder without attention has to carry the whole source through its final state, so its "
             "curve is the one expected to rise with length (Bahdanau et al. 2015).", "",
             f"![loss by source length]({figure})", "",
             "| arch | run | attention | source tokens | pairs | loss [95 % CI] | BLEU (test) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in found:
        bleu = {tuple(x["src_len"]): x for x in b.bleu}
        for (lo, hi), loss, ci, n in zip(b.edges, b.loss, b.ci, b.pairs, strict=True):
            hit = next((x for (a, z), x in bleu.items() if a <= lo + 1 and z >= hi), None)
            score = f"{hit['bleu']:.2f} ({hit['pairs']})" if hit else "-"
            lines.append(f"| {b.arch} | {b.run} | {b.attention} | {lo + 1}-{hi} | {n} | {loss:.3f} "
                         f"[{ci[0]:.3f}, {ci[1]:.3f}] | {score} |")  # fmt: skip
    return [*lines, ""]


def source_length_report(found: list[Bucketed], out_dir: Path) -> list[str]:
    """Figure and markdown lines; [] (nothing drawn) without buckets."""
    return source_length_lines(found, draw_source_length(found, out_dir)) if found else []


def source_length_section(
    sweep_dir: str | Path | RunFiles, records: list[RunRecord], out_dir: Path
) -> list[str]:
    """The section alone, from the sweep's files (``sweep_dir``: its directory or its `RunFiles`)."""
    return source_length_report(source_lengths(sweep_dir, records), Path(out_dir))
