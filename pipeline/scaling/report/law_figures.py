"""The law figures: loss against non-embedding parameters (L(N) at fixed D) and against training compute (L(C) on
the frontier), one panel per architecture with the reference's fit in grey in every other panel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.analyses.arch_fit import ArchFit, points_by_size
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.report.figure_style import (
    REFERENCE_COLOR,
    arch_colors,
    draw_law,
    legend_below,
    log_ticks,
    panel_grid,
    save,
    setup_matplotlib,
)


def _law_figure(
    plt,
    sweep: SweepFit,
    key: str,
    x_of: Callable[[Any], float],
    y_of: Callable[[Any], float],
    points: Callable[[ArchFit], tuple[np.ndarray, np.ndarray]],
    labels: tuple[str, str, str],
    x_range: Callable[[ArchFit], tuple[float, float]],
) -> Any:
    """Per architecture: every run (faint), the points the law is fitted to, the fit with its band, and (grey,
    dashed) the reference's fit in every other panel."""
    colors = arch_colors(list(sweep.archs))
    ref = sweep.archs.get(REFERENCE_ARCH)
    fig, axes = panel_grid(plt, len(sweep.archs))
    point_label, x_label, y_label = labels
    for ax, (a, af) in zip(axes, sweep.archs.items(), strict=True):
        ax.scatter([x_of(r) for r in af.records], [y_of(r) for r in af.records], color=colors[a], alpha=0.3, s=9,
                   lw=0, zorder=2, label="every run")  # fmt: skip
        dropped = getattr(af, "learned_nothing", [])
        if dropped:
            ax.scatter([x_of(r) for r in dropped], [y_of(r) for r in dropped], color="0.5", marker="x", s=14,
                       lw=0.8, zorder=2, label="learned nothing (not fitted)")  # fmt: skip
        px, py = points(af)
        ax.scatter(px, py, color=colors[a], s=22, marker="D", zorder=4, label=point_label)
        lo, hi = x_range(af)
        f = af.fits[key]
        draw_law(ax, f, lo / 1.5, hi * 1.5, colors[a], "fit (band: 95 % bootstrap CI)")
        if ref is not None and a != REFERENCE_ARCH:
            rlo, rhi = x_range(ref)
            draw_law(
                ax, ref.fits[key], rlo / 1.5, rhi * 1.5, REFERENCE_COLOR, f"{REFERENCE_ARCH} fit", ls="--"
            )
        alpha = "underdetermined" if f.underdetermined else f"alpha = {f.params['alpha']:.3g}"
        ci = f.ci.get("alpha")
        if ci and not f.underdetermined:
            alpha += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
        ax.set(xscale="log", yscale="log", title=f"{a}: {alpha}", xlabel=x_label)
        ax.grid(True, which="major", alpha=0.3, lw=0.5)
    for ax in axes[:: min(3, len(axes))]:
        ax.set_ylabel(y_label)
    log_ticks(axes[0].yaxis, *axes[0].get_ylim())  # shared y: one locator for every panel
    log_ticks(axes[0].xaxis, *axes[0].get_xlim())  # shared x likewise
    legend_below(fig, axes)
    fig.tight_layout()
    return fig


def draw_law_figures(sweep: SweepFit, out_dir: Path) -> dict[str, str]:
    """loss_vs_params and loss_vs_compute into ``out_dir`` (PNG + PDF); returns {"params"/"compute": PNG name}."""
    plt = setup_matplotlib()
    files = {}
    fig = _law_figure(
        plt,
        sweep,
        "L_N",
        lambda r: r.non_embedding_params,
        lambda r: r.best_valid_loss,
        lambda af: points_by_size(af.records),
        ("largest-D run per size (fitted)", "non-embedding parameters N", "valid loss (nats/token)"),
        lambda af: (min(af.sizes), max(af.sizes)),
    )
    files["params"] = save(fig, out_dir / "loss_vs_params.png")

    def frontier(af: ArchFit) -> tuple[np.ndarray, np.ndarray]:
        return np.array([r.compute for r in af.frontier]), np.array([r.final_valid_loss for r in af.frontier])

    fig = _law_figure(
        plt,
        sweep,
        "L_C",
        lambda r: r.compute,
        lambda r: r.final_valid_loss,
        frontier,
        ("compute frontier (fitted)", "training compute C (FLOPs)", "final valid loss (nats/token)"),
        lambda af: af.compute_range,
    )
    files["compute"] = save(fig, out_dir / "loss_vs_compute.png")
    return files
