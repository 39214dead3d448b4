"""Position figures: loss by target position per size (95 % CI bands over validation sequences where the runs
saved per-token losses), and each recurrent architecture's log loss ratio to the Transformer by position with its
paired CI band, the bend test's hinge fit and t* with its CI. One panel per architecture, PNG + PDF. They draw
the analyses' results (`analyses.positions`, `analyses.plateau`) and read no file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.positions import PositionCurve
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.token_losses import TOKEN_LOSS_FILE
from pipeline.scaling.report.figure_style import (
    BAND_ALPHA,
    arch_colors,
    legend_below,
    panel_grid,
    save,
    setup_matplotlib,
)

Curves = dict[str, list[tuple[RunRecord, PositionCurve]]]  # arch -> (run, its loss by position) per size


def _position_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=30))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("target position t + 1 (1 = first token)")
    ax.grid(True, which="major", alpha=0.3, lw=0.5)


def _loss_by_position(plt, curves: Curves):
    fig, axes = panel_grid(plt, len(curves), sharex=True, sharey=True)
    any_ci = False
    for ax, (a, runs) in zip(axes, curves.items(), strict=True):
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
        for color, (run, c) in zip(colors, runs, strict=True):
            if not len(c.mean):
                continue
            t = np.arange(1, len(c.mean) + 1)
            if c.lo is not None:
                any_ci = True
                ax.fill_between(t, c.lo, c.hi, color=color, alpha=BAND_ALPHA, lw=0, zorder=1)
            ax.plot(
                t,
                c.mean,
                color=color,
                lw=1.2,
                zorder=3,
                label=f"N={run.non_embedding_params:.3g}, D={run.tokens:.2g}",
            )
        ax.set_title(a)
        _position_axis(ax)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.27), ncol=2, fontsize=6, frameon=False)
    for ax in axes[:: min(3, len(axes))]:
        ax.set_ylabel("mean valid loss at position t (nats)")
    note = "bands: 95 % CI over validation sequences" if any_ci else f"no {TOKEN_LOSS_FILE}: no CI bands"
    fig.suptitle(f"Loss by target position, each size's largest-budget run ({note})", fontsize=8)
    fig.tight_layout()
    return fig


def _log_ratio(plt, sweep: SweepFit):
    colors = arch_colors(list(sweep.archs))
    fig, axes = panel_grid(plt, len(sweep.plateaus), sharex=True, sharey=True)
    for ax, (a, p) in zip(axes, sweep.plateaus.items(), strict=True):
        rho = np.array(p.log_ratio, dtype=float)
        t = np.arange(1, len(rho) + 1)
        if p.log_ratio_lo:
            ax.fill_between(t, p.log_ratio_lo, p.log_ratio_hi, color=colors[a], alpha=BAND_ALPHA, lw=0, zorder=1,
                            label="95 % CI (paired bootstrap over sequences)")  # fmt: skip
        ax.plot(t, rho, color=colors[a], lw=1.2, zorder=3, label="log ratio")
        ax.axhline(0.0, color="0.3", lw=0.6, zorder=2)
        test = p.test
        if test is not None and test.positions:
            ax.plot(np.array(test.positions) + 1, test.fitted, color="k", ls="--", lw=1, zorder=4,
                    label="hinge fit at the best breakpoint")  # fmt: skip
        if p.position is not None:
            ax.axvline(p.position + 1, color="k", lw=1, zorder=4, label="t* (bend test rejects at 5 %)")
            if p.ci is not None:
                ax.axvspan(
                    p.ci[0] + 1, p.ci[1] + 1, color="k", alpha=0.08, lw=0, zorder=0, label="95 % CI of t*"
                )
            title = f"{a}: t* = {p.position} [{p.ci[0]}, {p.ci[1]}], p = {p.p_value:.2g}"
        elif p.p_value is not None:
            title = f"{a}: no bend detectable (p = {p.p_value:.2g})"
        else:
            title = f"{a}: no per-token losses, not tested"
        ax.set_title(title)
        _position_axis(ax)
    for ax in axes[:: min(3, len(axes))]:
        ax.set_ylabel(f"log(L_arch(t) / L_{REFERENCE_ARCH}(t))")
    legend_below(fig, axes)
    fig.tight_layout()
    return fig


def draw_position_figures(sweep: SweepFit, curves: Curves, out_dir: Path) -> dict[str, str]:
    """loss_vs_position (``curves``: each architecture's largest-budget run per size) and, with plateaus,
    position_ratio, into ``out_dir``; returns {"position"/"ratio": PNG name}."""
    plt = setup_matplotlib()
    files = {"position": save(_loss_by_position(plt, curves), out_dir / "loss_vs_position.png")}
    if sweep.plateaus:
        files["ratio"] = save(_log_ratio(plt, sweep), out_dir / "position_ratio.png")
    return files
