"""The report's figures, PNG (for report.md) and PDF (for a paper) side by side.

Small multiples: one panel per architecture on shared axes, with the Transformer's fit and band redrawn in grey in
every other panel as the reference, so each comparison is read in one panel and no band hides another. Log axes
get labelled ticks at 1-9 (and halves when the range is narrow) times a power of ten, since a loss spanning 4-7
nats would otherwise show a single "10^0"-style label. Legends sit below the panels, never over data.

matplotlib (Agg backend) only; imported by `report_markdown.write_report`, so `pipeline scaling fit` never loads it.
The position figures are `position_plots.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.fit import FitResult
from pipeline.scaling.report import REFERENCE_ARCH, ArchFit, SweepFit, points_by_size

REFERENCE_COLOR = "0.45"
BAND_ALPHA = 0.18
PANEL_W, PANEL_H = 3.6, 3.0


def setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7, "pdf.fonttype": 42})
    return plt


def arch_colors(archs: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    return {a: plt.cm.tab10(i % 10) for i, a in enumerate(archs)}


def panel_grid(plt, n: int, sharey: bool = True, sharex: bool = True):
    """A figure with ``n`` panels in rows of at most 3; unused cells are removed. Returns (fig, [axes])."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(PANEL_W * cols, PANEL_H * rows), squeeze=False, sharex=sharex, sharey=sharey
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    for ax in flat[:n]:  # tick labels on every panel: a panel above a removed cell would otherwise have none
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, flat[:n]


def log_ticks(axis, lo: float, hi: float) -> None:
    """Labelled ticks on a log axis over [lo, hi] (data units): the coarsest of m x 10^k with m in 1..9, then
    halves, then tenths, that puts >= 4 ticks in range; plain numbers (ScalarFormatter-style) as labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return
    subs = np.arange(1.0, 10.0)
    for step in (1.0, 0.5, 0.1):
        subs = np.arange(1.0, 10.0, step)
        ticks = [
            s * 10.0**k
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for s in subs
        ]
        if sum(lo <= t <= hi for t in ticks) >= 4:
            break
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=100))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def band(fit: FitResult, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    samples = fit.sample_params()
    if not samples:
        return None
    curves = np.array([fit.predict(x, params=p) for p in samples])
    return np.nanpercentile(curves, 2.5, axis=0), np.nanpercentile(curves, 97.5, axis=0)


def draw_law(ax, fit: FitResult, lo: float, hi: float, color, label: str, ls: str = "-") -> None:
    """Fitted law (line, above) and its 95 % bootstrap band (under every line and point)."""
    if fit.underdetermined:
        return
    x = np.geomspace(lo, hi, 200)
    ax.plot(x, fit.predict(x), color=color, lw=1.4, ls=ls, label=label, zorder=3)
    b = band(fit, x)
    if b is not None:
        ax.fill_between(x, *b, color=color, alpha=BAND_ALPHA, lw=0, zorder=1)


def save(fig, path: Path) -> str:
    """Write ``path`` (PNG) and the same figure as PDF beside it; returns the PNG's file name."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return path.name


def legend_below(fig, axes: Sequence[Any]) -> None:
    """One legend for the figure, under the panels (entries deduplicated by label)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(seen)),
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
    legend_below(fig, axes)
    fig.tight_layout()
    return fig


def draw_plots(sweep: SweepFit, out_dir: Path) -> dict[str, str]:
    """Every figure of the report into ``out_dir`` (PNG + PDF); returns {key: PNG file name}."""
    from pipeline.scaling.position_plots import draw_position_plots

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
    files.update(draw_position_plots(sweep, out_dir))
    return files
