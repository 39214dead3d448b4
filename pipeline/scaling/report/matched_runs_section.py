"""The report's "Matched runs" section: loss ratios of two architectures' runs of one size label and budget
(`analyses.matched_runs`), final and at early and late target positions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipeline.scaling.analyses.matched_runs import EARLY, LATE_FROM, MatchedRunRatios, matched_run_ratios
from pipeline.scaling.records.run_record import RunRecord


def _geo(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if not finite:
        return "n/a"
    mean = math.exp(sum(math.log(v) for v in finite) / len(finite))
    return f"{mean:.3f} ({min(finite):.3f}-{max(finite):.3f})"


def matched_runs_lines(pairs: list[MatchedRunRatios]) -> list[str]:
    """Markdown lines for the report; [] when no two architectures share a size label and budget."""
    if not pairs:
        return []
    md = [
        "## Matched runs: same size label, same budget",
        "",
        "Runs named `<arch>-<size>-<budget>` with the same size and budget saw the same batches; for the LSTM "
        "ablations the size label also fixes d_model and depth. Ratios L_a / L_b at the largest budget both reached, "
        f"geometric mean over the matched sizes (min-max in brackets); > 1 means a is worse. Early = target "
        f"positions {EARLY[0]}-{EARLY[1] - 1}, late = positions >= {LATE_FROM} (mean valid loss there). Late/early "
        "> 1 means a falls further behind far into the target. One seed per run: no CI.",
        "",
        "| a vs b | tokens | sizes | final loss | early positions | late positions | late / early |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        drift = [lt / er for lt, er in zip(p.late, p.early, strict=True)]
        md.append(f"| {p.arch_a} vs {p.arch_b} | {p.tokens:,} | {', '.join(p.sizes)} | {_geo(p.final)} | "
                  f"{_geo(p.early)} | {_geo(p.late)} | {_geo(drift)} |")  # fmt: skip
    return [*md, ""]


def matched_runs_section(records: Sequence[RunRecord]) -> list[str]:
    """The section alone, from records."""
    return matched_runs_lines(matched_run_ratios(records))
