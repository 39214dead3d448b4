"""One budget's seeds train a few tokens apart (whole steps of seed-dependent batches): the fits still see one
point with three seeds. And a rate is chosen on every run, including runs that learned nothing (they lose)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.scaling.analyses.sweep_fit import fit_sweep
from pipeline.scaling.fits.points import group_points, snap_budgets
from pipeline.scaling.records.run_record import save_record
from pipeline.scaling.report.analysis_sections import lr_section
from pipeline.scaling.report.core_sections import _runs_table
from tests.unit.test_scaling_seeds_lr import rec


def test_seeds_a_few_tokens_apart_are_one_point_and_budgets_stay_apart():
    runs = [
        rec(f"s{s}", tokens=t, loss=3.0 + s / 10, seed=s)
        for s, t in ((1, 252_666), (2, 251_990), (3, 253_120))
    ]
    runs += [rec("big", tokens=500_000, loss=2.5, seed=1), rec("other-size", n=4000, tokens=252_700, seed=1)]
    snapped = snap_budgets(runs)
    # one budget across the sweep: the other size's 252,700 joins the seeds' cluster (the median of four runs)
    assert [r.tokens for r in snapped] == [252_683, 252_683, 252_683, 500_000, 252_683]
    assert [r.compute for r in snapped] == [r.compute for r in runs]  # each run keeps its own FLOPs
    points = group_points(snapped)
    assert [(p.n, p.tokens, p.n_seeds) for p in points] == [
        (1000, 252_683, 3),
        (1000, 500_000, 1),
        (4000, 252_683, 1),
    ]
    assert points[0].loss == pytest.approx(3.2)
    assert len(group_points(runs)) == 5  # on exact tokens, every seed would be a point of its own


def test_rates_are_chosen_on_every_run_and_the_tables_show_the_fitted_seed_mean(tmp_path: Path):
    # at 200k, rate 1e-2 learned nothing (it diverged) and 3e-3 learned; at 100k, 1e-2 was ahead. The largest
    # budget decides, so 3e-3 is the best rate and the fits keep its runs at both budgets.
    runs = [rec("a-100k-hi", tokens=100_000, loss=3.5, lr=1e-2, seed=1, unigram_entropy=5.0),
            rec("a-200k-hi", tokens=200_000, loss=5.2, lr=1e-2, seed=1, unigram_entropy=5.0),
            rec("a-100k-lo", tokens=100_000, loss=3.7, lr=3e-3, seed=1, unigram_entropy=5.0),
            rec("a-200k-lo", tokens=200_000, loss=3.4, lr=3e-3, seed=1, unigram_entropy=5.0),
            rec("a-200k-lo-s2", tokens=201_000, loss=3.6, lr=3e-3, seed=2, unigram_entropy=5.0)]  # fmt: skip
    for r in runs:
        save_record(tmp_path / r.run / "result.json", r)
    sweep = fit_sweep(tmp_path, n_boot=0, n_starts=2, progress=False)
    af = sweep.archs["lstm"]
    assert sorted(r.run for r in af.records) == ["a-100k-lo", "a-200k-lo", "a-200k-lo-s2"]
    assert [r.run for r in af.learned_nothing] == ["a-200k-hi"] and [r.run for r in af.other_lr] == [
        "a-100k-hi"
    ]
    table = "\n".join(_runs_table(sweep))
    assert "| lstm | 1,000 | 3.700 | 3.500 (2 seeds) |" in table  # not the 5.2 that learned nothing
    scan = "\n".join(lr_section(sweep))
    assert "| 1,000 | 200,000 | **3.500 (2 seeds)** | 5.200 (nothing learned) |" in scan  # tokens: the median
