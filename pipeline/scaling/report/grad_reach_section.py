"""The report's "Gradient reach through time" section and figure (`analyses.grad_reach`): per architecture, the
gradient norm by target and source position at the last measurement, and how far back the signal reaches over
training; one panel per architecture and view, the reference architecture in grey."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.scaling.analyses.grad_reach import GradReach, first_over_last
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.report.figure_style import (
    REFERENCE_COLOR,
    arch_colors,
    legend_below,
    save,
    setup_matplotlib,
    view_grid,
)

NORM_LABEL = "||dL/dx_t|| (loss of the last target token)"


def draw_norms_by_position(axes: Any, results: dict[str, dict[str, list[float]]], **style: Any) -> None:
    """On two axes (target, source): log-scale gradient norm against position, one line per label."""
    for ax, key in zip(axes, ("tgt", "src"), strict=True):
        for label, norms in results.items():
            ax.semilogy(range(len(norms[key])), norms[key], label=label, **style)
        ax.set_xlabel(f"{'target' if key == 'tgt' else 'source'} position t")
        ax.set_ylabel(NORM_LABEL)


def draw_grad_reach(reach: dict[str, GradReach], path: Path) -> str:
    """Rows: target-side norms (last measurement), source-side norms, target first/last over training; one
    panel per architecture. Returns the file name."""
    archs = sorted(reach)
    colors = arch_colors(archs)
    ref = reach.get(REFERENCE_ARCH)
    plt = setup_matplotlib()
    fig, (tgt, src, over) = view_grid(plt, 3, len(archs), sharey="view")
    for i, arch in enumerate(archs):
        r = reach[arch]
        if ref is not None and arch != REFERENCE_ARCH:
            draw_norms_by_position((tgt[i], src[i]), {f"{REFERENCE_ARCH} ({ref.run}), reference": {"tgt": ref.tgt[-1],
                                   "src": ref.src[-1]}}, color=REFERENCE_COLOR, ls="--")  # fmt: skip
            over[i].semilogy(ref.steps, [first_over_last(t) for t in ref.tgt], color=REFERENCE_COLOR, ls="--",
                             marker="o", ms=3, label=f"{REFERENCE_ARCH} ({ref.run}), reference")  # fmt: skip
        draw_norms_by_position((tgt[i], src[i]), {f"{arch} ({r.run})": {"tgt": r.tgt[-1], "src": r.src[-1]}},
                               color=colors[arch])  # fmt: skip
        over[i].semilogy(r.steps, [first_over_last(t) for t in r.tgt], color=colors[arch], marker="o", ms=3,
                         label=f"{arch} ({r.run})")  # fmt: skip
        tgt[i].set_title(f"{arch}\ntarget side, last measurement")
        src[i].set_title(f"{arch}\nsource side, last measurement")
        over[i].set(title=f"{arch}\nhow far back the signal reaches, over training", xlabel="training step")
    for axes, label in ((tgt, NORM_LABEL), (src, NORM_LABEL), (over, "target ||dL/dx_0|| / ||dL/dx_last||")):
        for i, ax in enumerate(axes):
            ax.set_ylabel(label if i % 3 == 0 else "")
    legend_below(fig, [*tgt, *over])
    fig.tight_layout()
    return save(fig, path)


def grad_reach_lines(reach: dict[str, GradReach], figure: str) -> list[str]:
    """The section's markdown lines (``figure``: the drawn figure's file name)."""
    md = [
        "## Gradient reach through time",
        "",
        "||dL/dx_t|| at the token embedding fed in at position t, for the loss of each row's last target token, "
        "on a training batch every `train.grad_reach_every` steps (`pipeline/training/grad_reach.py`); one run per "
        "architecture (its largest-compute run that measured it). first/last = the norm at position 0 over the norm "
        "at the last position: ~1 means the signal reaches the start of the sequence, << 1 means it vanishes on the "
        "way (the logged `grad_reach/tgt_first_over_last`); min/max is the weakest norm at any position "
        "over the strongest. Source-side gradients also flow through attention, so the target side is the purer test of the "
        "recurrence.",
        "",
        "| arch | run | measurements | tgt first/last, first measurement | tgt first/last, last | tgt min/max, "
        "last | src min/max, last |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch, r in sorted(reach.items()):
        first, last = (first_over_last(v) for v in (r.tgt[0], r.tgt[-1]))
        reach_tgt, reach_src = (GradReach.min_over_max(v) for v in (r.tgt[-1], r.src[-1]))
        md.append(f"| {arch} | {r.run} | {len(r.steps)} (steps {r.steps[0]}-{r.steps[-1]}) | {first:.3g} | "
                  f"{last:.3g} | {reach_tgt:.3g} | {reach_src:.3g} |")  # fmt: skip
    return [*md, "", f"![gradient reach]({figure})", ""]


def grad_reach_report(reach: dict[str, GradReach], out_dir: Path) -> list[str]:
    """Figure (`grad_reach.png`) and markdown lines; [] (nothing drawn) when no run measured gradient reach."""
    return grad_reach_lines(reach, draw_grad_reach(reach, out_dir / "grad_reach.png")) if reach else []
