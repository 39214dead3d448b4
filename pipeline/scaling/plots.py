"""The report's PNGs: loss vs parameters and vs compute with fitted laws and 95 % bootstrap bands, loss by target
position per size, and each recurrent architecture's loss ratio to the Transformer by position.

matplotlib (Agg backend) only; imported by `report.write_report`, so `pipeline scaling fit` never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scaling.positions import mean_loss_by_position
from pipeline.scaling.fit import FitResult
from pipeline.scaling.report import REFERENCE_ARCH, SweepFit, points_by_size


def _band(fit: FitResult, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    samples = fit.sample_params()
    if not samples:
        return None
    curves = np.array([fit.predict(x, params=p) for p in samples])
    return np.nanpercentile(curves, 2.5, axis=0), np.nanpercentile(curves, 97.5, axis=0)


def _draw_law(ax, fit: FitResult, lo: float, hi: float, color, label: str) -> None:
    if fit.underdetermined:
        return
    x = np.geomspace(lo, hi, 200)
    ax.plot(x, fit.predict(x), color=color, lw=1.5, label=label)
    band = _band(fit, x)
    if band is not None:
        ax.fill_between(x, *band, color=color, alpha=0.15, lw=0)


def draw_plots(sweep: SweepFit, out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(sweep.archs)}
    files = {}

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for a, af in sweep.archs.items():
        n, loss = points_by_size(af.records)
        ax.scatter(
            [r.non_embedding_params for r in af.records],
            [r.best_valid_loss for r in af.records],
            color=colors[a],
            alpha=0.25,
            s=12,
        )
        ax.scatter(n, loss, color=colors[a], s=30, label=f"{a} (largest-D run per size)")
        f = af.fits["L_N"]
        _draw_law(ax, f, n.min() / 1.5, n.max() * 1.5, colors[a], f"{a} fit, alpha_N={f.params['alpha']:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel="valid loss (nats/token)")
    ax.set_title("Loss vs model size (bands: 95% bootstrap CI)")
    ax.legend(fontsize=7)
    files["params"] = _save(fig, out_dir / "loss_vs_params.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for a, af in sweep.archs.items():
        ax.scatter(
            [r.compute for r in af.records],
            [r.final_valid_loss for r in af.records],
            color=colors[a],
            alpha=0.3,
            s=12,
        )
        fc, fl = [r.compute for r in af.frontier], [r.final_valid_loss for r in af.frontier]
        ax.step(fc, fl, where="post", color=colors[a], ls=":", lw=1)
        ax.scatter(fc, fl, color=colors[a], s=30, marker="D", label=f"{a} frontier")
        lo, hi = af.compute_range
        f = af.fits["L_C"]
        _draw_law(ax, f, lo / 1.5, hi * 1.5, colors[a], f"{a} fit, alpha_C={f.params['alpha']:.3g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training compute C (FLOPs)",
        ylabel="final valid loss (nats/token)",
    )
    ax.set_title("Loss vs compute: runs, compute frontier, L(C) fit")
    ax.legend(fontsize=7)
    files["compute"] = _save(fig, out_dir / "loss_vs_compute.png")

    fig, axes = plt.subplots(
        1, len(sweep.archs), figsize=(4.5 * len(sweep.archs), 4), squeeze=False, sharey=True
    )
    for ax, (a, af) in zip(axes[0], sweep.archs.items(), strict=True):
        sizes = af.sizes
        cmap = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
        for color, size in zip(cmap, sizes, strict=True):
            run = max((r for r in af.records if r.non_embedding_params == size), key=lambda r: r.tokens)
            curve = mean_loss_by_position([run])
            if len(curve):
                ax.plot(
                    np.arange(1, len(curve) + 1),
                    curve,
                    color=color,
                    label=f"N={size:.3g}, D={run.tokens:.3g}",
                )
        ax.set(title=a, xlabel="target position t + 1 (1 = first token)", xscale="log")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("mean valid loss at position t")
    files["position"] = _save(fig, out_dir / "loss_vs_position.png")

    if sweep.plateaus:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for a, p in sweep.plateaus.items():
            ax.plot(
                np.arange(1, len(p.log_ratio) + 1),
                p.log_ratio,
                color=colors[a],
                label=f"{a} / {REFERENCE_ARCH}",
            )
            if p.position is not None:
                ax.axvline(p.position + 1, color=colors[a], ls="--", lw=1)
        ax.set(xlabel="target position t + 1", ylabel="smoothed log(L_a(t) / L_ref(t))", xscale="log")
        ax.set_title("Relative loss by position (dashed: plateau position)")
        ax.legend(fontsize=7)
        files["ratio"] = _save(fig, out_dir / "position_ratio.png")
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name
