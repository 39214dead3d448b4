"""report.md's "Loss on a token subset" section (`pipeline scaling report --tokens-after/--token-ids/--token-mask`):
one row per run, its loss on the named tokens against its loss on all, with intervals."""

from __future__ import annotations

from pipeline.scaling.analyses.token_subset import UNIT, Interval, TokenSubsetResult


def _ci(x: Interval | None) -> str:
    return "-" if x is None else f"{x.estimate:.4f} [{x.lo:.4f}, {x.hi:.4f}]"


def token_subset_lines(result: TokenSubsetResult | None) -> list[str]:
    """The section's markdown lines; [] when no subset was asked for."""
    if result is None:
        return []
    ref = f"`{result.reference}`" if result.reference else "the reference run"
    md = [
        "",
        "## Loss on a token subset",
        "",
        f"Selected: {result.selector.describe()}. Per run: the mean loss (nats per token) on those tokens, on every "
        f"scored token, and their gap, with 95 % percentile intervals from {result.n_boot} resamples of validation "
        f"{UNIT}s (each {UNIT} a cluster; the same resamples for the three columns; a resample without any "
        "selected token is left out). Last column: the run's subset "
        f"loss minus {ref}'s on the same tokens, paired (the same {UNIT}s on both sides).",
        "",
        f"| run | arch | tokens ({UNIT}s) | subset loss | all tokens | subset - all | vs {ref} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        md.append(
            f"| {r.run} | {r.arch} | {r.n_tokens} ({r.n_seqs}) | {_ci(r.subset)} | {_ci(r.overall)} | "
            f"{_ci(r.gap)} | {_ci(r.vs_reference)} |"
        )
    if not result.rows:
        md.append("| (no run could be scored) | | | | | | |")
    md += [f"- not scored: {why}" for why in result.skipped]
    return md
