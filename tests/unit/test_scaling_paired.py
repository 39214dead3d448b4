"""Matched-run comparisons in the scaling report (pipeline/scaling/paired_runs.py)."""

import math

import pytest

from pipeline.scaling.analyses.matched_runs import matched_run_ratios as paired_comparisons
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.report.matched_runs_section import matched_runs_section as paired_section


def record(arch: str, size: str, tokens: int, params: int, final: float, positions: list[float]) -> RunRecord:
    label = {100_000: "100k", 1_000_000: "1M"}[tokens]
    return RunRecord(run=f"{arch}-{size}-{label}", arch=arch, params=params, non_embedding_params=params // 2,
                     flops_per_token=1e3, tokens=tokens, compute=1e3 * tokens, epochs=0.5, final_valid_loss=final,
                     best_valid_loss=final, loss_by_position=positions)  # fmt: skip


def flat(value: float, n: int = 40) -> list[float]:
    return [value] * n


def noresid(early: float, late: float) -> list[float]:
    return [early] * 8 + [99.0] * 24 + [late] * 7 + [math.nan]  # positions 8-31 are neither early nor late


RECORDS = [
    record("lstm", "d32", 1_000_000, 1000, 4.0, flat(2.0)),
    record("lstm", "d64", 1_000_000, 4000, 3.0, flat(2.0)),
    record("lstm", "d32", 100_000, 1000, 5.0, flat(2.0)),
    record("lstm_no_cell_residual", "d64", 1_000_000, 3000, 3.6, noresid(2.4, 3.6)),
    record("lstm_no_cell_residual", "d32", 1_000_000, 800, 4.4, noresid(2.2, 3.0)),
    record("lstm_no_cell_residual", "d96", 1_000_000, 9000, 3.0, noresid(2.2, 3.0)),  # no lstm-d96: unmatched
    record("transformer", "d32", 100_000, 1200, 4.0, flat(1.0)),
]


def test_matched_runs_give_ratios_against_the_baseline_at_the_largest_shared_budget() -> None:
    pairs = {(p.arch_a, p.arch_b): p for p in paired_comparisons(RECORDS)}
    # no lstm_no_cell_residual / transformer pair: their only common size label (d32) is at different budgets
    assert set(pairs) == {("lstm_no_cell_residual", "lstm"), ("lstm", "transformer")}
    ablation = pairs[("lstm_no_cell_residual", "lstm")]
    assert ablation.tokens == 1_000_000 and ablation.sizes == ["d32", "d64"]  # ordered by size, d96 unmatched
    assert ablation.final == pytest.approx([1.1, 1.2])
    assert ablation.early == pytest.approx([1.1, 1.2]) and ablation.late == pytest.approx([1.5, 1.8])
    base = pairs[("lstm", "transformer")]
    assert base.tokens == 100_000 and base.sizes == ["d32"] and base.final == pytest.approx([1.25])
    assert base.late == pytest.approx([2.0])


def test_section_reports_geometric_means_and_is_empty_without_matches() -> None:
    text = "\n".join(paired_section(RECORDS))
    g = math.sqrt(1.1 * 1.2)
    drift = math.sqrt(1.5 / 1.1 * 1.8 / 1.2)
    assert (f"| lstm_no_cell_residual vs lstm | 1,000,000 | d32, d64 | {g:.3f} (1.100-1.200) | {g:.3f} (1.100-1.200) "
            f"| {math.sqrt(1.5 * 1.8):.3f} (1.500-1.800) | {drift:.3f} (1.364-1.500) |") in text  # fmt: skip
    assert paired_section([RECORDS[0], RECORDS[-1]]) == []  # different size labels: nothing matched
