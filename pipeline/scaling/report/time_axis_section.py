"""The report's time-axis section and figure: loss against measured device-seconds and projected GPU-hours
(`analyses.time_axis`), one panel per architecture and view, with the reference's frontier in grey."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cost.projection import LABEL
from pipeline.scaling.analyses.time_axis import ACCELERATORS, CONTEXT_LENGTHS, TimeAxis, time_axis
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.report.figure_style import (
    REFERENCE_COLOR,
    arch_colors,
    legend_below,
    log_axes,
    save,
    setup_matplotlib,
    view_grid,
)


def _frontier(ax, c: dict[str, Any], color: Any, label: str, ls: str = "-", zorder: int = 3) -> None:
    """A frontier as a step line through marked points: a frontier of one point is still drawn (a marker)."""
    fx = [c["x"][i] for i in c["frontier"]]
    fl = [c["loss"][i] for i in c["frontier"]]
    ax.step(fx, fl, where="post", color=color, lw=1.4, ls=ls, marker="o", ms=3, label=label, zorder=zorder)


def draw_time_figure(ta: TimeAxis, path: Path) -> str:
    """Rows: measured device-seconds per device type, then the first projection (labelled PROJECTED), each view
    with a timed run; one panel per architecture: every run faint, its frontier, the reference's in grey dashed."""
    first = ta.first_projection
    views = [(f"measured: {dev}", curves, "device-seconds") for dev, curves in ta.measured.items()]
    if first is not None:
        views.append((f"PROJECTED: {first['device']['name']}", first["curves"], "GPU-hours (cost model)"))
    views = [v for v in views if any(c["x"] for c in v[1].values())]  # a view with no timed run: left out
    archs = sorted({a for _, curves, _ in views for a in curves})
    colors = arch_colors(archs)
    plt = setup_matplotlib()
    fig, grid = view_grid(plt, len(views), len(archs))
    for axes, (title, curves, unit) in zip(grid, views, strict=True):
        ref = curves.get(REFERENCE_ARCH)
        for ax, arch in zip(axes, archs, strict=True):
            c = curves.get(arch)
            ax.set(title=f"{arch}\n{title}", xlabel=unit)
            if c is None or not c["x"]:
                ax.text(0.5, 0.5, "no runs with a time", ha="center", va="center", transform=ax.transAxes)
                continue
            ax.scatter(
                c["x"], c["loss"], color=colors[arch], alpha=0.3, s=9, lw=0, zorder=2, label="every run"
            )
            _frontier(ax, c, colors[arch], f"{arch} frontier (best loss within the budget)")
            if ref is not None and ref["x"] and arch != REFERENCE_ARCH:
                _frontier(
                    ax, ref, REFERENCE_COLOR, f"{REFERENCE_ARCH} frontier (reference)", ls="--", zorder=1
                )
            ax.set(xscale="log", yscale="log")
            ax.grid(True, which="major", alpha=0.3, lw=0.5)
        for ax in axes[:: min(3, len(axes))]:
            ax.set_ylabel("final valid loss (nats/token)")
        for ax in axes:
            log_axes(ax)
    legend_below(fig, [ax for axes in grid for ax in axes])
    fig.tight_layout()
    return save(fig, path)


def _behind(entry: dict[str, Any], unit: str) -> str:
    lo, hi = entry["common_range"]
    if "no_overlap" in entry:
        return f"no common budget: {entry['no_overlap']} ({lo:.3g} > {hi:.3g} {unit})"
    where = f"(compared over {lo:.3g}-{hi:.3g} {unit})"
    v = entry["first_behind"]
    return f"not behind at the largest common budget {where}" if v is None else f"{v:.3g} {unit} {where}"


def time_axis_lines(ta: TimeAxis, figure: str | None) -> list[str]:
    """The section's markdown lines (``figure``: the drawn figure's file name, linked when given)."""
    if ta.note:
        return ["## Loss against time", "", f"Not drawn: {ta.note}.", ""]
    md = ["## Time axis: loss against hardware time", ""]
    if figure:
        md += [f"![loss vs time]({figure})", ""]
    md += ["Measured: training time x devices, per device type (frontier: best loss within a time budget).", "",
           "| device | arch | runs | time source | frontier best loss | fitted alpha | behind the Transformer from |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for dev, cs in ta.measured.items():
        vs = ta.measured_vs_reference[dev]
        for a, c in cs.items():
            alpha = c["fit"].params.get("alpha", math.nan)
            behind = _behind(vs[a], "s") if a in vs else "-"
            md.append(f"| {dev} | {a} | {len(c['runs'])} | {'; '.join(c['sources'])} | {min(c['loss']):.4f} | "
                      f"{alpha:.3g} | {behind} |")  # fmt: skip
    md += ["", f"**Projected GPU-hours** ({LABEL}; loss held at each run's measured value, docs/cost_model.md):", "",
           "| accelerator | context | arch | behind the Transformer from (GPU-h) | fitted-law crossings (GPU-h) |",
           "|---|---|---|---|---|"]  # fmt: skip
    for acc, by_ctx in ta.projected.items():
        for ctx, p in by_ctx.items():
            for a, v in p["vs_transformer"].items():
                cross = ", ".join(f"{x:.3g}" for x in v["fit_crossings"]) or "none"
                md.append(f"| {acc} (projection) | {ctx} | {a} | {_behind(v, 'GPU-h')} | {cross} |")
    return [*md, ""]


def draw_time_axis(ta: TimeAxis, out_dir: Path) -> str | None:
    """``time_vs_loss.png`` (+ PDF) into ``out_dir`` when there is anything to draw; its file name, else None."""
    first = ta.first_projection
    timed = [
        c for cs in [*ta.measured.values(), first["curves"] if first else {}] for c in cs.values() if c["x"]
    ]
    if ta.note or first is None or not timed:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    return draw_time_figure(ta, out_dir / "time_vs_loss.png")


def time_axis_section(records: Sequence[RunRecord], out_dir: str | Path, n_boot: int = 0,
                      accelerators: Sequence[str] = ACCELERATORS,
                      context_lengths: Sequence[int | None] = CONTEXT_LENGTHS) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The section alone, from records: (the ``time_axis`` entry of fit.json, its markdown); draws the figure."""
    ta = time_axis(records, n_boot, accelerators, context_lengths)
    return ta.to_dict(), "\n".join(time_axis_lines(ta, draw_time_axis(ta, Path(out_dir))))


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.scaling.report.time_axis_section SWEEP_DIR [--out DIR]`: the section alone (markdown +
    time_axis.json)."""
    import argparse

    from pipeline.scaling.records.json_file import save_json_atomic
    from pipeline.scaling.records.sweep_dir import load_records

    p = argparse.ArgumentParser(
        prog="python -m pipeline.scaling.report.time_axis_section", description=main.__doc__
    )
    p.add_argument("sweep_dir")
    p.add_argument(
        "--out", default=None, help="where time_vs_loss.png and time_axis.json go (default SWEEP_DIR)"
    )
    p.add_argument("--n-boot", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out or args.sweep_dir)
    data, md = time_axis_section(load_records(args.sweep_dir), out, n_boot=args.n_boot)
    save_json_atomic(out / "time_axis.json", data)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
