"""Seeds, learning rates, runs that learned nothing and the compute axes, alone and through `pipeline scaling`."""

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.scaling.analyses.learned_nothing import split_learned_nothing, unigram_entropy
from pipeline.scaling.analyses.lr_scan import select_best_lr
from pipeline.scaling.analyses.sweep_fit import fit_sweep
from pipeline.scaling.cli import run_fit_command
from pipeline.scaling.fits.compute_axes import curve, flops_per_token, mean_curve
from pipeline.scaling.fits.frontier import frontier
from pipeline.scaling.fits.points import group_points, record_lr
from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.scaling.report.analysis_sections import analysis_sections
from pipeline.scaling.report.fit_json import sweep_to_dict

V, ENTROPY = 64, 4.0


def rec(name="r", n=1000, tokens=10_000, loss=3.0, lr=None, seed=None, d_model=8, **over) -> RunRecord:
    fpt = 6.0 * n + 6.0 * d_model * V + 100.0
    base = dict(run=name, arch="lstm", params=2 * n, non_embedding_params=n, flops_per_token=fpt, tokens=tokens,
                compute=fpt * tokens, epochs=0.5, final_valid_loss=loss, best_valid_loss=loss,
                loss_by_position=[loss, loss], wall_time_s=1.0,
                config={"model": {"d_model": d_model}, "data": {"vocab_size": V}, "optim": {"lr": 2e-3}},
                lr=lr, seed=seed)  # fmt: skip
    return RunRecord(**(base | over))


def test_unigram_entropy_in_nats_from_counts():
    assert unigram_entropy([5, 5, 5, 5]) == pytest.approx(math.log(4))
    assert unigram_entropy({3: 10, 7: 0, 9: 10}) == pytest.approx(math.log(2))
    assert unigram_entropy(np.bincount([1, 1, 1, 1])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unigram_entropy"):
        unigram_entropy([0, 0])


def test_runs_at_or_above_the_unigram_entropy_are_split_off_and_unknown_ones_counted():
    runs = [rec("good", loss=3.0, unigram_entropy=ENTROPY), rec("flat", loss=4.0, unigram_entropy=ENTROPY),
            rec("old", loss=5.0)]  # fmt: skip
    keep, flagged, unknown = split_learned_nothing(runs)
    assert [r.run for r in keep] == ["good", "old"] and [r.run for r in flagged] == ["flat"] and unknown == 1
    keep, flagged, unknown = split_learned_nothing(runs, fallback=4.5)  # old records: entropy given by hand
    assert [r.run for r in flagged] == ["flat", "old"] and unknown == 0


def test_each_size_keeps_its_best_learning_rate_and_old_records_read_the_config():
    assert record_lr(rec()) == 2e-3 and record_lr(rec(lr=1e-3)) == 1e-3
    runs = [rec("a-lo", n=1000, lr=1e-3, loss=3.2), rec("a-hi", n=1000, lr=3e-3, loss=3.0),
            rec("a-hi-small-D", n=1000, lr=3e-3, tokens=1000, loss=3.9),
            rec("b-lo", n=4000, lr=1e-3, loss=2.5, seed=1), rec("b-lo2", n=4000, lr=1e-3, loss=2.7, seed=2),
            rec("b-hi", n=4000, lr=3e-3, loss=2.65), rec("c", n=9000, lr=1e-3, loss=2.4)]  # fmt: skip
    kept, scan = select_best_lr(runs)
    assert sorted(r.run for r in kept) == ["a-hi", "a-hi-small-D", "b-lo", "b-lo2", "c"]
    assert scan.best == {1000: 3e-3, 4000: 1e-3} and scan.loss[4000][1e-3] == (pytest.approx(2.6), 2)
    points = group_points(kept)
    b = next(p for p in points if p.n == 4000)
    assert (
        b.n_seeds == 2
        and b.loss == pytest.approx(2.6)
        and b.spread == pytest.approx(np.std([2.5, 2.7], ddof=1))
    )


def test_a_best_rate_at_the_edge_of_its_scan_is_flagged_in_the_report():
    """Issue 32's rule: an optimum at the edge of its scan is a hint. Size 1000's best of three rates is the
    highest; size 4000's is interior; a tie at the edge (a flat curve) says nothing about rates beyond it."""
    from pipeline.scaling.report.analysis_sections import lr_section

    runs = [rec(f"a-{lr}", n=1000, lr=lr, loss=loss) for lr, loss in ((1e-3, 3.3), (2e-3, 3.1), (4e-3, 3.0))]
    runs += [rec(f"b-{lr}", n=4000, lr=lr, loss=loss) for lr, loss in ((1e-3, 2.8), (2e-3, 2.6), (4e-3, 2.7))]
    runs += [rec(f"c-{lr}", n=9000, lr=lr, loss=2.5) for lr in (1e-3, 2e-3)]
    _, scan = select_best_lr(runs)
    assert scan.at_edge == {1000: "high", 4000: None, 9000: None}

    class Sweep:  # lr_section reads each architecture's scan
        archs = {"lstm": type("Arch", (), {"lr_scan": scan, "learned_nothing": [], "all_records": runs})}

    text = "\n".join(lr_section(Sweep()))
    assert "| 1,000 | 10,000 | 3.300 | 3.100 | **3.000** | high |" in text
    assert "| 4,000 | 10,000 | 2.800 | **2.600** | 2.700 | - |" in text
    assert "**Best rate at the edge of its scan**: lstm at N = 1,000 (high: 0.004)" in text


def test_three_compute_axes_and_the_curve_frontier():
    r = rec(n=1000, d_model=8)
    assert flops_per_token(r, "model") == r.flops_per_token
    assert flops_per_token(r, "6N") == 6000.0
    assert flops_per_token(r, "no_output") == pytest.approx(6000.0 + 100.0)  # minus 6 d V from the config
    assert flops_per_token(rec(flops_per_token_no_output=123.0), "no_output") == 123.0
    assert flops_per_token(rec(config={}), "no_output") is None
    valid = [{"step": 1, "tokens": 2000, "loss": 5.0}, {"step": 2, "tokens": 6000, "loss": 4.0}]
    with_curve = rec("c", valid_curve=valid, loss=3.0)
    assert curve(with_curve) == [(2000.0, 5.0), (6000.0, 4.0), (10000.0, 3.0)] and curve(rec()) == [
        (1e4, 3.0)
    ]
    seeds = [with_curve, rec("c2", loss=3.5, valid_curve=[{**p, "loss": p["loss"] + 0.5} for p in valid])]
    assert mean_curve(seeds)[-1] == (1e4, 3.25)
    # a small run's early point undercuts nothing; the big run's intermediate point enters the frontier
    front = frontier([("small", 1.0, [(1e3, 6.0), (1e4, 5.0)]), ("big", 10.0, [(5e2, 5.5), (1e4, 3.0)])])
    assert [(q.run, q.compute) for q in front] == [("small", 1e3), ("big", 5e3), ("small", 1e4), ("big", 1e5)]


def write_sweep(sweep: Path) -> None:
    """5 sizes x 3 budgets, 2 seeds at the top size, 2 learning rates at one size, one run that learned nothing."""
    rng = np.random.default_rng(0)
    for n in (2e4, 6e4, 2e5, 6e5, 2e6):
        for tokens in (30_000, 100_000, 300_000):
            seeds = (1, 2) if n == 2e6 else (1,)
            for lr in (1e-3, 3e-3) if n == 2e5 else (2e-3,):
                for seed in seeds:

                    def law(t, n=n, lr=lr):
                        return 1.5 + (3e5 / n) ** 0.3 + (1e4 / t) ** 0.3 + (0.3 if lr == 1e-3 else 0.0)

                    loss = law(tokens) * math.exp(rng.normal(0, 0.003))
                    if n == 2e4 and tokens == 30_000:
                        loss = 6.0  # above the entropy: learned nothing
                    steps = [{"step": s, "tokens": int(tokens * s / 4), "loss": law(tokens * s / 4) + 0.05}
                             for s in (1, 2, 3)]  # fmt: skip
                    name = f"lstm-{int(n)}-{tokens}-lr{lr:g}-s{seed}"
                    save_record(sweep / name / "result.json", rec(
                        name, n=int(n), tokens=tokens, loss=loss, lr=lr, seed=seed, d_model=int(n ** 0.5 / 4),
                        valid_curve=steps, unigram_entropy=5.5))  # fmt: skip


def test_sweep_with_seeds_rates_and_curves_fits_and_reports_them(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    write_sweep(sweep_dir)
    sweep = fit_sweep(sweep_dir, n_boot=5, n_starts=4, progress=False)  # few starts: wiring, not accuracy
    fit = sweep_to_dict(sweep)
    lstm = fit["archs"]["lstm"]
    assert fit["learned_nothing"]["count"] == 1 and lstm["learned_nothing"] == ["lstm-20000-30000-lr0.002-s1"]
    assert fit["n_runs"] == 21 and fit["n_runs_fitted"] == 17
    assert len(lstm["other_lr_runs"]) == 3 and lstm["lr_scan"]["200000"]["best_lr"] == 3e-3
    top = [p for p in lstm["points"] if p["n"] == 2_000_000]
    assert len(top) == 3 and all(p["seeds"] == 2 and p["spread"] > 0 for p in top)
    assert lstm["fits"]["L_N"]["note"].startswith("fixed D")
    assert set(lstm["compute_exponents"]) == {"model", "no_output", "6N"}
    six_n = lstm["compute_exponents"]["6N"]
    assert six_n["alpha"] == lstm["fits"]["L_C_6N"]["params"]["alpha"] and six_n["fit_keys"] == [
        "L_C_6N",
        "L_C_6N_E",
    ]
    assert lstm["compute_exponents"]["model"]["alpha"] != six_n["alpha"]
    assert lstm["fits"]["L_C"]["interval"] == "BCa over points"
    assert lstm["fits"]["L_N"]["interval"] == "studentized residual bootstrap"
    assert any(q["tokens"] not in (30_000, 100_000, 300_000) for q in lstm["frontier"])  # intermediate points
    assert lstm["fits"]["L_N_surface"]["params"]["alpha"] == pytest.approx(0.3, abs=0.1)
    # sizes span 100x in N but budgets only 10x in D: no compute budget is reached by 5 sizes
    assert lstm["isoflop"]["underdetermined"] and "compute budgets" in lstm["isoflop"]["reason"]
    text = "\n".join(analysis_sections(sweep))
    for heading in ("## Runs left out of the fits", "## Learning-rate scan", "## Seeds",
                    "## L(N) from the L(N, D) surface", "## L(C) exponents on three compute axes",
                    "## IsoFLOP profiles", "## How the intervals were made"):  # fmt: skip
        assert heading in text, heading
    assert "**1 of 21 runs learned nothing**" in text
    assert "| 200,000 | 300,000 | 3.28" in text and "**2.99" in text  # the scan row, the best rate in bold


def test_fit_command_writes_fit_json_into_out(tmp_path: Path, capsys):
    sweep, out = tmp_path / "sweep", tmp_path / "elsewhere"
    write_sweep(sweep)
    args = type(
        "A", (), {"sweep_dir": str(sweep), "n_boot": 0, "seed": 0, "out": str(out), "unigram_entropy": None}
    )
    assert run_fit_command(args) == 0
    assert (out / "fit.json").is_file() and not (sweep / "fit.json").exists()
    assert f"wrote {out}/fit.json" in capsys.readouterr().out


def test_progress_lines_report_count_share_and_stage():
    import io

    from pipeline.scaling.fits.progress import ProgressLines

    out = io.StringIO()
    bar = ProgressLines(4, "scaling fit", every_s=0.0, stream=out)
    bar.set_stage("lstm L_C")
    bar.tick()
    bar.finish()  # a skipped fit's resamples still end the count at 100 %
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("scaling fit: 1/4 resamples (25 %)") and lines[0].endswith("[lstm L_C]")
    assert lines[-1].startswith("scaling fit: 4/4 resamples (100 %)")


def test_an_architecture_whose_runs_all_learned_nothing_is_counted_not_fitted(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    write_sweep(sweep_dir)
    for tokens in (30_000, 300_000):
        name = f"minlstm-x-{tokens}"
        save_record(sweep_dir / name / "result.json",
                    rec(name, arch="minlstm", tokens=tokens, loss=6.0, unigram_entropy=5.5))  # fmt: skip
    sweep = fit_sweep(sweep_dir, n_boot=0, n_starts=4, progress=False)
    assert list(sweep.archs) == ["lstm"] and list(sweep.unfitted) == ["minlstm"]
    fit = sweep_to_dict(sweep)
    assert fit["n_runs"] == 23 and fit["learned_nothing"]["count"] == 3
    assert fit["unfitted_archs"]["minlstm"]["learned_nothing"] == ["minlstm-x-30000", "minlstm-x-300000"]
    assert "Not fitted at all (every run learned nothing): minlstm." in "\n".join(analysis_sections(sweep))
