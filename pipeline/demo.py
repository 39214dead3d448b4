"""`pipeline demo` (`make demo`): train small LSTM, residual-LSTM and Transformer models on the embedded corpus with the
same token budget, then print a comparison table and write `summary.md` and `valid_loss.png` to the demo directory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipeline.training.logged_metrics import read_metric

ARCHS = ("lstm", "residual_lstm", "transformer")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configs", default="configs/demo", help="directory with base.yaml and one YAML per arch"
    )
    parser.add_argument("--out", default="runs/demo", help="where the three runs, the table and the plot go")
    parser.add_argument(
        "--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="architectures to train"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="applied to every run, e.g. train.max_steps=50"
    )


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.training.trainer import fit

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = Path(args.configs)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for arch in args.archs:
        cfg = load_config(
            [configs / "base.yaml", configs / f"{arch}.yaml"], [*args.overrides, f"run_dir={out / arch}"]
        )
        print(f"\n=== {arch}: training {cfg.train.max_steps} steps in {cfg.resolved_run_dir} ===", flush=True)
        t0 = time.perf_counter()
        summary = fit(cfg, resume="auto")
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(summary)
    total = time.perf_counter() - started
    table = render_table(rows)
    print(table)
    print(f"demo wall time: {total:.0f} s")
    plot_path = plot_valid_curves(rows, out / "valid_loss.png")
    write_summary(rows, total, out / "summary.md", plot_path)
    (out / "demo.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    print(f"wrote {out / 'summary.md'}, {plot_path}, {out / 'demo.json'}")
    return 0


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["arch"],
            _fmt(r["params"] / 1e6, ".2f"),
            _fmt(r["non_embedding_params"] / 1e6, ".2f"),
            _fmt(r.get("tokens_per_s"), ",.0f"),
            _fmt(r.get("valid_loss"), ".3f"),
            _fmt(r.get("valid_ppl"), ".1f"),
            _fmt(r.get("bleu"), ".2f"),
            _fmt(r.get("chrf"), ".1f"),
            _fmt(r.get("wall_s"), ".0f"),
        ]
        for r in rows
    ]


HEADER = [
    "arch",
    "params (M)",
    "non-emb (M)",
    "tokens/s",
    "valid loss",
    "valid ppl",
    "BLEU",
    "chrF",
    "wall (s)",
]


def render_table(rows: list[dict[str, Any]]) -> str:
    """A rich table rendered to text (so it also lands in logs)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="demo: same corpus, same batches, same token budget")
    for name in HEADER:
        table.add_column(name, justify="left" if name == "arch" else "right")
    for row in table_rows(rows):
        table.add_row(*row)
    console = Console(width=120, record=True)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def plot_valid_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        curve = read_metric(Path(row["run_dir"]), "valid/loss")
        steps, losses = list(curve), list(curve.values())
        ax.plot(steps, losses, marker="o", label=f"{row['arch']} ({row['params'] / 1e6:.1f}M)")
    ax.set_xlabel("optimizer step (same batches for every model)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("English -> French (Bible, held-out books)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(rows: list[dict[str, Any]], total_s: float, path: Path, plot: Path) -> None:
    lines = [
        "# Demo summary",
        "",
        f"Three architectures, same data and token budget, CPU. Total wall time {total_s:.0f} s.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(r) + " |" for r in table_rows(rows)),
        "",
        f"![validation loss]({plot.name})",
        "",
        "Example translations (greedy, first test pairs):",
        "",
    ]
    for row in rows:
        for ex in row.get("examples", [])[:1]:
            lines += [f"- **{row['arch']}**: `{ex['src']}` -> `{ex['hyp']}` (reference: `{ex['ref']}`)"]
    path.write_text("\n".join(lines) + "\n")
