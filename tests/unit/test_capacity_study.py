"""The capacity study of a memory sweep: a synthetic sweep of result.json records with planted
accuracies following N*(d) = c d^gamma (several seeds and rates) -> `analyses.capacity` recovers N* and gamma within
their CIs, flags a best rate at the scan's edge, gives a never-failing architecture a lower bound, and tells pairs
from distance; `pipeline scaling report` on it writes the "Capacity law" section, its figures and fit.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.scaling.analyses.capacity import capacity_study, curve_lengths
from pipeline.scaling.fits.capacity_law import INTERPOLATED, LOWER_BOUND
from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.scaling.records.sweep_dir import load_sweep

C, GAMMA, V = 0.25, 1.0, 256  # planted N*(d) = 0.25 d: 4, 8, 16, 32 at d = 16 .. 128
WIDTHS, NS, RATES, SEEDS = (16, 32, 64, 128), (1, 2, 4, 8, 16, 32, 64), (1e-3, 3e-3, 1e-2), (1, 2, 3)
ANSWERS = 4000


def planted(n: float, d: int) -> float:
    """Logistic in log N through 0.9 at N*(d)."""
    z = 4.0 * (math.log(n) - math.log(C * d**GAMMA)) - math.log(9)
    return 1 / (1 + math.exp(z))


def record(arch: str, d: int, n: int, lr: float, seed: int, correct: int, answers: int = ANSWERS,
           length: int | None = None, vocab: int = V) -> RunRecord:  # fmt: skip
    length = length or 4 * n + 16
    state = 4 * d if arch != "transformer" else 2 * 2 * d * length
    metrics = {
        "task": "mqar", "split": "valid", "V": vocab, "L": length, "N": n, "filler": "random", "power_a": 0.01,
        "state_floats": state, "state_bits": 32 * state, "answers": answers, "correct": correct,
        "accuracy": correct / answers, "loss": 1.0,
        "by_distance": [{"distance": [1, 1], "answers": answers, "correct": correct,
                         "accuracy": correct / answers, "loss": 1.0}],
    }  # fmt: skip
    name = f"{arch}-d{d}-N{n}-L{length}-lr{lr:g}-s{seed}"
    return RunRecord(
        run=name, arch=arch, params=1000, non_embedding_params=500, flops_per_token=10.0, tokens=1000,
        compute=10_000.0, epochs=1.0, final_valid_loss=1.0, best_valid_loss=1.0, config={
            "model": {"arch": arch, "d_model": d}, "seed": seed, "optim": {"lr": lr}},
        seed=seed, lr=lr, answer_metrics=metrics,
    )  # fmt: skip


def synthetic_sweep(root: Path) -> Path:
    """lstm follows the planted law (best at the middle rate, except d = 128: best at the highest); the
    transformer never fails (a lower bound)."""
    rng = np.random.default_rng(0)
    for d in WIDTHS:
        for n in NS:
            for lr in RATES:
                for seed in SEEDS:
                    best = RATES[2] if d == 128 else RATES[1]
                    p = planted(n, d) * (1.0 if lr == best else 0.6)
                    k = int(rng.binomial(ANSWERS, p))
                    save_record(
                        root / f"lstm-{d}-{n}-{lr:g}-{seed}" / "result.json",
                        record("lstm", d, n, lr, seed, k),
                    )
        for n in NS:
            for seed in SEEDS:
                k = int(rng.binomial(ANSWERS, 0.995))
                save_record(
                    root / f"tf-{d}-{n}-{seed}" / "result.json", record("transformer", d, n, 3e-3, seed, k)
                )
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_sweep(tmp_path_factory.mktemp("capacity") / "sweep")


def test_recovers_the_planted_n_star_and_gamma(sweep: Path) -> None:
    cap = capacity_study(load_sweep(sweep).records, n_boot=400)
    assert cap is not None and cap.task == "mqar" and cap.chance == pytest.approx(1 / (V / 2))
    lstm = cap.archs["lstm"]
    for d, w in lstm.widths.items():
        true = C * d**GAMMA
        assert w.n_star.kind == INTERPOLATED
        assert w.n_star.ci[0] <= true <= w.n_star.ci[1], (d, w.n_star)
        assert w.n_star.value == pytest.approx(true, rel=0.1)
        assert w.bits_per_float == pytest.approx(w.n_star.value * math.log2(V / 2) / (4 * d))
        assert set(w.seeds.values()) == {3}
        assert len(next(iter(w.rates.values())).curve) == 3  # the whole rate curve is kept
    assert lstm.law.gamma_ci[0] <= GAMMA <= lstm.law.gamma_ci[1]
    assert lstm.law.gamma == pytest.approx(GAMMA, abs=0.1)
    # the planted best rates: in the middle of the scan, at its high edge for d = 128
    assert {c.at_edge for c in lstm.widths[64].rates.values()} == {None}
    assert {c.best_lr for c in lstm.widths[128].rates.values()} == {RATES[2]}
    assert {c.at_edge for c in lstm.widths[128].rates.values()} == {"high"}
    tf = cap.archs["transformer"]
    assert {w.n_star.kind for w in tf.widths.values()} == {LOWER_BOUND}
    assert {w.n_star.value for w in tf.widths.values()} == {max(NS)}
    assert math.isnan(tf.law.gamma) and set(tf.law.excluded) == set(WIDTHS)


def test_report_writes_the_capacity_section_figures_and_fit_json(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert cli(["scaling", "report", str(sweep), "--n-boot", "100", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Capacity law" in text and "Text-task sections skipped: every run is a memory task" in text
    assert (
        "## Caveats" not in text and "L(C)" not in text.split("## Capacity law")[1]
    )  # no text-task sections
    assert "≥ 64 (lower bound" in text and "γ = " in text and "chance 0.00781" in text
    assert "| high at every N (0.01) |" in text  # the d = 128 best rate at the scan's edge
    for name in ("capacity_accuracy", "capacity_nstar", "capacity_state_bits"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    fit = json.loads((out / "fit.json").read_text())
    law = fit["capacity"]["archs"]["lstm"]["law"]
    assert law["gamma_ci95"][0] <= GAMMA <= law["gamma_ci95"][1]
    assert (
        law["one_grid_interval"] is None and "Every fitted N* lies between" not in text
    )  # N* spread over the grid
    assert fit["capacity"]["archs"]["transformer"]["widths"]["16"]["kind"] == LOWER_BOUND
    assert fit["archs"] == {} and "memory task" in fit["text_fits_skipped"]


def test_pairs_versus_distance_names_what_failure_tracks() -> None:
    """One model fails with N whatever L (capacity), another with L whatever N (forgetting)."""
    records = []
    for length in (64, 128, 256):
        for n in (4, 8, 16):
            for arch, acc in (
                ("capacity", 1.0 if n <= 4 else 0.1),
                ("forgetting", 1.0 if length <= 64 else 0.1),
            ):
                records.append(record(arch, 32, n, 1e-3, 1, int(acc * 1000), 1000, length))
    cap = capacity_study(records, n_boot=50)
    tracks = {p.arch: p.tracks for p in cap.pairs_vs_distance}
    assert tracks == {"capacity": "N", "forgetting": "L"}
    # the N curve uses each N's shortest L (every N was run at every L)
    assert cap.archs["forgetting"].widths[32].accuracy == {4: 1.0, 8: 1.0, 16: 1.0}


def test_the_n_curve_keeps_the_study_length_when_distance_cells_are_shorter() -> None:
    """The CPU study's layout (N = 1..8 at L = 32, N = 2 also at L = 8 and 16, N = 1 also at 64 and 128) keeps
    every N at 32; Zoology's diagonal with N = 8 also at 256 and 512 keeps N = 8 at 128."""
    cpu = [(32, n) for n in (1, 2, 4, 8)] + [(8, 2), (16, 2), (64, 1), (128, 1)]
    assert curve_lengths(cpu) == {1: 32, 2: 32, 4: 32, 8: 32}
    zoology = [(64, 4), (128, 8), (256, 16), (512, 64), (256, 8), (512, 8)]
    assert curve_lengths(zoology) == {4: 64, 8: 128, 16: 256, 64: 512}
    assert curve_lengths([(64, 1), (16, 2)]) == {1: 64}  # N = 2 only at a shorter L: off the curve
    # through the analysis: N = 2 at L = 8 solved, at L = 32 at the plateau; the curve reads L = 32
    records = [record("lstm", 32, n, 1e-3, 1, k, 1000, length)
               for n, length, k in ((1, 32, 1000), (2, 32, 500), (2, 8, 1000), (1, 128, 1000))]  # fmt: skip
    assert capacity_study(records, n_boot=20).archs["lstm"].widths[32].accuracy == {1: 1.0, 2: 0.5}


def test_zoology_published_accuracy_shown_where_the_cell_matches(tmp_path: Path) -> None:
    for n, length in ((4, 64), (16, 256)):
        for seed in SEEDS:
            r = record("transformer", 64, n, 1e-3, seed, 990, 1000, length, vocab=8192)
            save_record(tmp_path / "sweep" / r.run / "result.json", r)
    assert cli(["scaling", "report", str(tmp_path / "sweep"), "--n-boot", "20"]) == 0
    text = (tmp_path / "sweep" / "report.md").read_text()
    assert "(L, N) = (256, 16), d = 64: published attention ≈ 0.98; this sweep's transformer 0.990" in text
    assert "Published, for comparison (Zoology" in text


def test_mixed_tasks_and_bad_threshold_are_one_line_errors(tmp_path: Path, capsys) -> None:
    a = record("lstm", 16, 2, 1e-3, 1, 10, 100)
    b = record("lstm", 16, 4, 1e-3, 1, 10, 100, vocab=512)
    with pytest.raises(ValueError, match="one task at one vocabulary"):
        capacity_study([a, b])
    save_record(tmp_path / "s" / a.run / "result.json", a)
    assert cli(["scaling", "report", str(tmp_path / "s"), "--threshold", "1.5"]) == 2
    assert "threshold=1.5: must be a number in (0, 1)" in capsys.readouterr().err


def test_a_sweep_of_text_and_memory_runs_gets_both_reports(tmp_path: Path) -> None:
    """The text laws are fitted on the text runs only; the memory runs get the capacity section beside them."""
    from tests.unit.test_scaling_plots import write_sweep

    sweep = tmp_path / "sweep"
    write_sweep(sweep)
    for n in (2, 4, 8):
        r = record("lstm", 16, n, 1e-3, 1, int(planted(n, 16) * 1000), 1000)
        save_record(sweep / r.run / "result.json", r)
    assert cli(["scaling", "report", str(sweep), "--n-boot", "10"]) == 0
    text = (sweep / "report.md").read_text()
    assert "## Capacity law" in text and "## Caveats" in text and "Text-task sections skipped" not in text
    fit = json.loads((sweep / "fit.json").read_text())
    assert fit["capacity"]["n_runs"] == 3 and all(
        n.startswith(("lstm", "transformer", "residual")) for n in fit["archs"]
    )
    fitted = [run for a in fit["archs"].values() for p in a["points"] for run in p["runs"]]
    assert fitted and not any("-N" in run for run in fitted)  # no memory run among the text fits


def test_copy_records_give_n_star_in_string_length() -> None:
    """Copy: each run's by_length rows are the curve (exact-match strings per length); N* is a length."""
    records = []
    for seed in SEEDS:
        rows = [{"length": n, "answers": 10 * n, "correct": 9 * n, "accuracy": 0.9, "loss": 0.1, "strings": 400,
                 "exact": int(400 * (0.99 if n <= 8 else 0.5 if n == 16 else 0.0)), "exact_match": None}
                for n in (4, 8, 16, 32)]  # fmt: skip
        r = record("lstm", 32, 1, 1e-3, seed, 0, 1)
        metrics = {"task": "copy", "V": 30, "L": 67, "alphabet_size": 26, "state_floats": 128, "state_bits": 4096,
                   "answers": 1, "correct": 0, "accuracy": 0.0, "loss": 1.0, "by_length": rows}  # fmt: skip
        records.append(RunRecord(**{**r.__dict__, "answer_metrics": metrics}))
    cap = capacity_study(records, n_boot=100)
    w = cap.archs["lstm"].widths[32]
    assert cap.task == "copy" and cap.chance == 0.0 and w.n_star.kind == INTERPOLATED
    assert 8 < w.n_star.value < 16  # 0.99 at 8, 0.5 at 16: 0.9 is crossed in between
    assert w.bits_per_float == pytest.approx(w.n_star.value * math.log2(26) / 128)
    assert cap.archs["lstm"].by_distance == [] and cap.pairs_vs_distance == []


def test_copy_report_without_bootstrap_names_one_edge_rate_once(tmp_path: Path) -> None:
    """Copy chooses one rate per width for every length: an edge optimum is one flag for the width, not one per
    length; `--n-boot 0` prints point estimates with "n/a" intervals, never "nan"."""
    for lr, exact in ((1e-3, 0.3), (1e-2, 0.95)):  # the scan's top rate wins at every length
        for d in (16, 32):
            rows = [{"length": n, "answers": 10 * n, "correct": 9 * n, "accuracy": 0.9, "loss": 0.1, "strings": 400,
                     "exact": int(400 * (exact if n <= d // 4 else 0.0)), "exact_match": None}
                    for n in (2, 4, 8, 16)]  # fmt: skip
            r = record("lstm", d, 1, lr, 1, 0, 1)
            metrics = {"task": "copy", "V": 30, "L": 67, "alphabet_size": 26, "state_floats": 4 * d,
                       "state_bits": 128 * d, "answers": 1, "correct": 0, "accuracy": 0.0, "loss": 1.0,
                       "by_length": rows}  # fmt: skip
            save_record(tmp_path / "sweep" / f"lstm-d{d}-lr{lr:g}" / "result.json",
                        RunRecord(**{**r.__dict__, "answer_metrics": metrics}))  # fmt: skip
    done = [json.loads(p.read_text())["run"] for p in (tmp_path / "sweep").glob("*/result.json")]
    todo = [f"lstm-d{d}-lr{lr:g}" for d in (64, 128, 256) for lr in (1e-3, 2e-3, 5e-3, 1e-2)]
    plan = {"grid": "grid.yaml", "runs": [{"name": n} for n in done + todo]}
    (tmp_path / "sweep" / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "report"
    assert cli(["scaling", "report", str(tmp_path / "sweep"), "--n-boot", "0", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    # 12 planned runs without a record: the first 10 named, the rest counted
    assert "4 finished runs; 12 not finished yet: lstm-d64-lr0.001, " in text and "and 2 more" in text
    assert "lstm-d256-lr0.005" not in text and "lstm-d256-lr0.01" not in text
    assert text.count("| high at every length (0.01) |") == 2  # one flag a width
    assert "length=4: high" not in text and "N=4: high" not in text
    assert "[n/a, n/a]" in text and "nan" not in text.lower().replace("nanoGPT", "")


def test_mqar_accuracy_figure_draws_the_one_over_n_plateau(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accuracy against N shows 1/N beside the threshold and chance: where a recurrence names one of the
    sequence's values without its key, its curve lies on that line, not at chance."""
    from pipeline.scaling.report import capacity_figures

    drawn: dict[str, object] = {}

    def keep(fig, path: Path) -> str:
        drawn[path.stem] = fig
        return path.name

    monkeypatch.setattr(capacity_figures, "save", keep)
    capacity_figures.draw_capacity_figures(capacity_study(load_sweep(sweep).records, n_boot=20), tmp_path)
    lines = [ln for ax in drawn["capacity_accuracy"].axes for ln in ax.get_lines()]
    (plateau, *_) = [ln for ln in lines if ln.get_label().startswith("1/N")]
    n, y = plateau.get_data()
    assert min(n) == min(NS) and max(n) == max(NS) and np.allclose(y, 1 / np.asarray(n))
