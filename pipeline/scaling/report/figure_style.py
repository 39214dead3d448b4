"""The one style of every report figure: PNG (for report.md) and PDF (for a paper) side by side.

Small multiples: one panel per architecture on shared axes, with the reference architecture redrawn in grey in
every other panel, so each comparison is read in one panel and no band hides another. Log axes get a few labelled
ticks (`log_ticks`: 1, 2, 5 or 1-9 times a power of ten, as the range needs) and never labelled minor ticks, since
matplotlib's defaults give either a single "10^0" on a loss spanning 4-7 nats or overlapping "2x10^12 3x10^12"
labels on a compute axis under a decade wide. Legends sit below the panels, never over data.

matplotlib (Agg backend) only; imported when a report is drawn, so `pipeline scaling fit` never loads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.fits.laws import FitResult

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
    fig, views = view_grid(plt, 1, n, sharey=sharey, sharex=sharex)
    return fig, views[0]


def view_grid(plt, n_views: int, n: int, sharey: bool | str = True, sharex: bool = True):
    """Small multiples of several views: each view is a block of ``n`` panels (one per architecture) in rows of
    at most 3, starting on a new row. x is shared within a view (``sharex``); ``sharey`` True shares y across the
    figure, "view" within each view. Returns (fig, [[axes of view 0], [axes of view 1], ...])."""
    cols = min(n, 3)
    per_view = math.ceil(n / cols)
    fig, grid = plt.subplots(n_views * per_view, cols, figsize=(PANEL_W * cols, PANEL_H * n_views * per_view),
                             squeeze=False, sharey=sharey is True)  # fmt: skip
    views = []
    for v in range(n_views):
        flat = list(grid[v * per_view : (v + 1) * per_view].ravel())
        for ax in flat[n:]:
            ax.remove()
        axes = flat[:n]
        for ax in axes[1:]:
            if sharex:
                ax.sharex(axes[0])
            if sharey == "view":
                ax.sharey(axes[0])
        for ax in axes:  # tick labels on every panel: a panel above a removed cell would otherwise have none
            ax.xaxis.set_tick_params(labelbottom=True)
        views.append(axes)
    return fig, views


# candidate tick mantissas, coarse to fine: the first that puts enough ticks in range is used; a range too narrow
# for all of them (under about a factor 2) gets evenly spaced ticks instead
TICK_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0), tuple(np.arange(1.0, 10.0)))


def tick_label(v: float) -> str:
    """A log-axis label: plain for 1e-4 <= v < 1e5 ("4", "0.02"), else m x 10^k in mathtext."""
    if not (np.isfinite(v) and v > 0):
        return ""
    k = math.floor(math.log10(v) + 1e-9)
    if -4 <= k <= 4:
        return f"{v:g}"
    m = f"{round(v / 10.0**k, 2):g}"
    return f"$10^{{{k}}}$" if m == "1" else f"${m}{{\\times}}10^{{{k}}}$"


def log_ticks(axis, lo: float, hi: float, min_ticks: int = 3) -> None:
    """Labelled ticks on a log axis over [lo, hi] (data units): the coarsest mantissa set of ``TICK_MANTISSAS``
    that puts >= ``min_ticks`` ticks in range, else about four evenly spaced round values; labelled by
    `tick_label`, minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for subs in TICK_MANTISSAS:
        if sum(lo <= s * 10.0**k <= hi for k in decades for s in subs) >= min_ticks:
            axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=100))
            break
    else:
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    axis.set_minor_formatter(NullFormatter())


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """`log_ticks` on the log axes of ``ax`` over their current limits."""
    if x and ax.get_xscale() == "log":
        log_ticks(ax.xaxis, *ax.get_xlim())
    if y and ax.get_yscale() == "log":
        log_ticks(ax.yaxis, *ax.get_ylim())


def band(fit: FitResult, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    samples = fit.sample_params()
    if not samples:
        return None
    curves = np.array([fit.predict(x, params=p) for p in samples])
    with np.errstate(
        invalid="ignore"
    ):  # resamples whose curve overflows: inf - inf between two of them is NaN
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
    fig.tight_layout()  # room between rows: a panel's title must not sit on the x label of the panel above it
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(seen)),
        )
