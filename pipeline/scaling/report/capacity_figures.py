"""The capacity-law figures, small multiples in the report's one style (`figure_style`):
- `capacity_accuracy`: best-over-rates accuracy against N (log axis), one panel per architecture, a line per
  width d, with the threshold, the chance level and (MQAR) the 1/N plateau;
- `capacity_nstar`: N*(d) on log-log axes, one panel per architecture: interpolated N* with its CI (filled), a
  bound as an open marker with an arrow the way it extends, the fitted law N* = c d^gamma with its band;
- `capacity_state_bits`: mean accuracy over the N cells against the model's state in bits, every architecture in
  one panel (the axis of Based, Arora et al. 2024, Fig. 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.capacity import ArchCapacity, Capacity, interpolated, mean_accuracy
from pipeline.scaling.fits.capacity_law import LOWER_BOUND
from pipeline.scaling.report.figure_style import (
    BAND_ALPHA,
    REFERENCE_COLOR,
    arch_colors,
    legend_below,
    log_axes,
    panel_grid,
    save,
    setup_matplotlib,
)


def _x_label(cap: Capacity) -> str:
    return "N (key-value pairs)" if cap.task == "mqar" else "string length"


def _accuracy_figure(plt, cap: Capacity, path: Path) -> str:
    archs = list(cap.archs)
    fig, axes = panel_grid(plt, len(archs))
    widths = sorted({d for ac in cap.archs.values() for d in ac.widths})
    shade = {d: plt.cm.viridis(0.15 + 0.7 * i / max(1, len(widths) - 1)) for i, d in enumerate(widths)}
    for ax, a in zip(axes, archs, strict=True):
        for d, w in sorted(cap.archs[a].widths.items()):
            ns, acc = zip(*sorted(w.accuracy.items()), strict=True)
            edge = [n for n in ns if w.rates[n].at_edge in ("low", "high")]
            ax.plot(ns, acc, color=shade[d], marker="o", ms=3, lw=1.3, label=f"d = {d}")
            ax.scatter(edge, [w.accuracy[n] for n in edge], facecolors="none", edgecolors="red", s=40, lw=0.8,
                       zorder=4, label="best rate at the scan's edge")  # fmt: skip
        ax.axhline(
            cap.threshold, color=REFERENCE_COLOR, ls="--", lw=0.9, label=f"threshold {cap.threshold:g}"
        )
        if cap.chance > 0:
            ax.axhline(cap.chance, color=REFERENCE_COLOR, ls=":", lw=0.9, label=f"chance {cap.chance:.3g}")
        all_n = sorted({n for w in cap.archs[a].widths.values() for n in w.accuracy})
        if cap.task == "mqar" and len(all_n) > 1:  # the plateau of a model that names a value without its key
            n_line = np.geomspace(all_n[0], all_n[-1], 50)
            ax.plot(n_line, 1 / n_line, color=REFERENCE_COLOR, ls="-.", lw=0.9,
                    label="1/N: one of the N values, unbound")  # fmt: skip
        ax.set(
            xscale="log",
            ylim=(-0.02, 1.02),
            title=a,
            xlabel=_x_label(cap),
            ylabel="accuracy (best over rates)",
        )
        log_axes(ax, y=False)
    legend_below(fig, axes)
    return save(fig, path)


def _nstar_panel(ax, ac: ArchCapacity, color) -> None:
    for d, w in sorted(ac.widths.items()):
        s = w.n_star
        if interpolated(w):
            lo, hi = s.ci
            ax.errorbar([d], [s.value], yerr=[[s.value - lo], [hi - s.value]], fmt="o", color=color, ms=4,
                        capsize=2, zorder=3, label="N* (95 % CI)")  # fmt: skip
        else:
            up = s.kind == LOWER_BOUND
            ax.scatter([d], [s.value], marker="^" if up else "v", facecolors="none", edgecolors=color, s=36,
                       zorder=3, label="bound (never failed / failed at every N)")  # fmt: skip
            tip = s.value * (1.8 if up else 1 / 1.8)
            ax.annotate(
                "",
                xy=(d, tip),
                xytext=(d, s.value),
                arrowprops={"arrowstyle": "->", "color": color, "lw": 0.9},
            )
            ax.plot([d], [tip], alpha=0)  # the arrow inside the axes' limits
    law = ac.law
    if np.isfinite(law.gamma) and law.widths:
        x = np.geomspace(min(ac.widths), max(ac.widths), 100)
        ax.plot(x, law.c * x**law.gamma, color=color, lw=1.3, label="fit N* = c d^γ", zorder=2)
        if law.gamma_replicates.size:
            # the band: the fit's line pivoted about the geometric-mean width by the gamma replicates
            x0 = float(np.exp(np.mean(np.log(law.widths))))
            y0 = law.c * x0**law.gamma
            lo_g, hi_g = np.quantile(law.gamma_replicates, [0.025, 0.975])
            curves = np.stack([y0 * (x / x0) ** g for g in (lo_g, hi_g)])
            ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=BAND_ALPHA, lw=0, zorder=1)
        ax.text(0.04, 0.94, f"γ = {law.gamma:.2f} [{law.gamma_ci[0]:.2f}, {law.gamma_ci[1]:.2f}]",
                transform=ax.transAxes, va="top", fontsize=7)  # fmt: skip


def _nstar_figure(plt, cap: Capacity, path: Path) -> str:
    archs = list(cap.archs)
    colors = arch_colors(archs)
    fig, axes = panel_grid(plt, len(archs))
    for ax, a in zip(axes, archs, strict=True):
        _nstar_panel(ax, cap.archs[a], colors[a])
        ax.set(
            xscale="log", yscale="log", title=a, xlabel="width d", ylabel=f"N* (accuracy ≥ {cap.threshold:g})"
        )
    for ax in axes:
        ax.relim()
        ax.autoscale_view()
        log_axes(ax)
    legend_below(fig, axes)
    return save(fig, path)


def _state_bits_figure(plt, cap: Capacity, path: Path) -> str:
    archs = list(cap.archs)
    colors = arch_colors(archs)
    fig, axes = panel_grid(plt, 1)
    ax = axes[0]
    for a in archs:
        ws = sorted(cap.archs[a].widths.values(), key=lambda w: w.state_bits)
        ax.plot([w.state_bits for w in ws], [mean_accuracy(w) for w in ws], color=colors[a], marker="o", ms=3,
                lw=1.3, label=a)  # fmt: skip
    if cap.chance > 0:
        ax.axhline(cap.chance, color=REFERENCE_COLOR, ls=":", lw=0.9, label=f"chance {cap.chance:.3g}")
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="state size (bits, the model's own count)",
           ylabel="mean accuracy over the N cells", title="accuracy against state size")  # fmt: skip
    log_axes(ax, y=False)
    legend_below(fig, axes)
    return save(fig, path)


def draw_capacity_figures(cap: Capacity, out_dir: Path) -> dict[str, str]:
    """The three figures (PNG + PDF) into ``out_dir``; returns {"accuracy", "nstar", "state_bits": PNG name}."""
    plt = setup_matplotlib()
    out_dir = Path(out_dir)
    return {
        "accuracy": _accuracy_figure(plt, cap, out_dir / "capacity_accuracy.png"),
        "nstar": _nstar_figure(plt, cap, out_dir / "capacity_nstar.png"),
        "state_bits": _state_bits_figure(plt, cap, out_dir / "capacity_state_bits.png"),
    }
