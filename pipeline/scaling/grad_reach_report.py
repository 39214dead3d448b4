"""The scaling report's "gradient reach" section: how far back the training signal reaches in trained models.

Runs trained with `train.grad_reach_every` append ||dL/dx_t|| per source and target position to
`<run>/grad_by_position.jsonl` (pipeline/training/grad_reach.py; L = the loss of each row's last target token). This module
reads those files for a sweep, draws one figure and writes a markdown table, so the vanishing-gradient picture that
the cell-state residual fixes sits next to the loss curves. Sweeps without such files get no section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.scaling.records import RESULT_FILE, load_record

GRAD_FILE = "grad_by_position.jsonl"


def first_over_last(norms: list[float]) -> float:
    """The norm at position 0 over the norm at the last position that has one: ~1 reaches, ~0 vanishes (NaN if
    there are fewer than two finite norms or the last is 0)."""
    finite = [v for v in norms if math.isfinite(v)]
    if len(finite) < 2 or finite[-1] <= 0:
        return math.nan
    return finite[0] / finite[-1]


def draw_norms_by_position(axes: Any, results: dict[str, dict[str, list[float]]]) -> None:
    """On two axes (target, source): log-scale gradient norm against position, one line per label."""
    for ax, key in zip(axes, ("tgt", "src"), strict=True):
        for label, norms in results.items():
            ax.semilogy(range(len(norms[key])), norms[key], label=label)
        ax.set_xlabel(f"{'target' if key == 'tgt' else 'source'} position t")
        ax.set_ylabel("||dL/dx_t|| (loss of the last target token)")


@dataclass
class GradReach:
    """One run's measurements, in training order."""

    run: str
    arch: str
    compute: float
    steps: list[int]
    src: list[list[float]]  # per measurement, ||dL/dx_t|| at source position t
    tgt: list[list[float]]

    @staticmethod
    def min_over_max(norms: list[float]) -> float:
        """The weakest norm at any position over the strongest: the deepest the signal fades along the sequence."""
        finite = [v for v in norms if math.isfinite(v)]
        return min(finite) / max(finite) if finite and max(finite) > 0 else math.nan


def load_grad_reach(sweep_dir: str | Path) -> dict[str, GradReach]:
    """arch -> the run with the most compute among that arch's finished runs that measured gradient reach."""
    best: dict[str, GradReach] = {}
    for path in sorted(Path(sweep_dir).glob(f"*/{GRAD_FILE}")):
        result = path.parent / RESULT_FILE
        if not result.is_file():
            continue
        record = load_record(result)
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {n} is not JSON: {err}") from err
        if not rows:
            continue
        reach = GradReach(record.run, record.arch, record.compute, [r["step"] for r in rows],
                          [r["src"] for r in rows], [r["tgt"] for r in rows])  # fmt: skip
        if record.arch not in best or reach.compute > best[record.arch].compute:
            best[record.arch] = reach
    return best


def draw_grad_reach(reach: dict[str, GradReach], path: Path) -> str:
    """Target- and source-side norms at the last measurement, and first/last over training; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    draw_norms_by_position(
        axes[:2], {f"{a} ({r.run})": {"tgt": r.tgt[-1], "src": r.src[-1]} for a, r in reach.items()}
    )
    for arch, r in reach.items():
        axes[2].semilogy(r.steps, [first_over_last(t) for t in r.tgt], marker="o", label=arch)
    for ax, side in zip(axes[:2], ("target", "source"), strict=True):
        ax.set_title(f"{side} side, last measurement")
    axes[2].set_xlabel("training step")
    axes[2].set_ylabel("target ||dL/dx_0|| / ||dL/dx_last||")
    axes[2].set_title("how far back the signal reaches, over training")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def grad_reach_section(sweep_dir: str | Path, out_dir: Path) -> list[str]:
    """Markdown lines (and `grad_reach.png` in out_dir) for a sweep's gradient-reach measurements; [] if none."""
    reach = load_grad_reach(sweep_dir)
    if not reach:
        return []
    png = draw_grad_reach(reach, out_dir / "grad_reach.png")
    md = [
        "## Gradient reach through time",
        "",
        "||dL/dx_t|| at the token embedding fed in at position t, for the loss of each row's last target token, "
        "on a training batch every `train.grad_reach_every` steps (`pipeline/grad_reach.py`); one run per "
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
    return [*md, "", f"![gradient reach]({png})", ""]
