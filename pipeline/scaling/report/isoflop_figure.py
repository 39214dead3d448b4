"""IsoFLOP figure: per architecture, loss vs N at each compute budget with its fitted parabola and minimum N*(C),
and N*(C) against C with its 95 % interval. Small multiples (one panel per architecture and view), legends outside
the data, PNG and PDF, in the report's one style (`figure_style`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.report.figure_style import log_axes, save, setup_matplotlib, view_grid


def draw_isoflop(sweep: SweepFit, out_dir: Path) -> str | None:
    """Draw ``isoflop.png`` (+ ``.pdf``) into ``out_dir``; None when no architecture has an IsoFLOP profile."""
    archs = [
        (a, af.isoflop) for a, af in sweep.archs.items() if af.isoflop is not None and af.isoflop.profiles
    ]
    if not archs:
        return None
    plt = setup_matplotlib()
    fig, (top, bottom) = view_grid(plt, 2, len(archs), sharey="view", sharex=False)
    for ax, ax_n, (arch, iso) in zip(top, bottom, archs, strict=True):
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(iso.profiles)))
        for color, p in zip(colors, iso.profiles, strict=True):
            ln = np.array(p.log_n)
            ax.scatter(np.exp(ln), p.loss, color=color, s=14, label=f"C = {p.compute:.2g}")
            grid = np.linspace(ln.min(), ln.max(), 100)
            ax.plot(np.exp(grid), np.polyval(p.coef, grid), color=color, lw=1)
            if p.inside:
                ax.axvline(p.n_opt, color=color, ls=":", lw=0.8)
        ax.set(
            xscale="log",
            title=arch,
            xlabel="non-embedding parameters N",
            ylabel="final valid loss (nats/token)",
        )
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.22), ncol=2, frameon=False)
        good = [p for p in iso.profiles if p.inside and math.isfinite(p.n_opt)]
        if good:
            c = np.array([p.compute for p in good])
            n = np.array([p.n_opt for p in good])
            ci = [p.n_opt_ci or (p.n_opt, p.n_opt) for p in good]
            err = np.array([[p.n_opt - lo, hi - p.n_opt] for p, (lo, hi) in zip(good, ci, strict=True)]).T
            ax_n.errorbar(c, n, yerr=err, fmt="o", ms=4, capsize=2, label="N*(C), 95 % CI")
            if math.isfinite(iso.exponent_n):
                fit = np.polyfit(np.log(c), np.log(n), 1)
                xs = np.geomspace(c.min(), c.max(), 50)
                ax_n.plot(xs, np.exp(np.polyval(fit, np.log(xs))), lw=1, label=f"N* ~ C^{iso.exponent_n:.2f}")
            ax_n.legend(fontsize=7, frameon=False)
        ax_n.set(xscale="log", yscale="log", xlabel="compute C (model FLOPs)", ylabel="N*(C)", title=arch)
        for a in (ax, ax_n):
            log_axes(a)
    fig.tight_layout()
    return save(fig, out_dir / "isoflop.png")
