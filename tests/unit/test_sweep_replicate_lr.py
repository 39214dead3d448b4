"""`replicate_best_lr: true`: the seeds after the first run only at each size's best rate, chosen on the first
seed at the largest budget; until that is known they are planned as waiting runs that nothing trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.scaling.analyses.lr_scan import select_best_lr
from pipeline.scaling.records.run_record import RunRecord, load_record, save_record
from pipeline.sweep.grid import SweepError, _budget_label, load_grid, plan_runs
from tests.conftest import ROOT

LRS = [1e-3, 3e-3]


def grid_file(tmp_path: Path, **changes: object) -> Path:
    grid = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    grid["base"] = str(ROOT / grid["base"])
    grid["archs"] = {"lstm": grid["archs"]["lstm"]}
    grid.update(token_budgets=[1000, 2000], seeds=[1, 2, 3], seed_sizes=1, lrs=LRS, replicate_best_lr=True)
    grid.update(changes)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def finish(sweep: Path, name: str, loss: float) -> None:
    """A first-seed record as the trainer writes it (`lstm-d32-2k-lr0.003-s1`: its rate and seed)."""
    lr, seed = float(name.split("-lr")[1].split("-s")[0]), int(name.rsplit("-s", 1)[1])
    save_record(sweep / name / "result.json", RunRecord(
        run=name, arch="lstm", params=2, non_embedding_params=1, flops_per_token=1.0, tokens=2000, compute=2000.0,
        epochs=0.1, final_valid_loss=loss, best_valid_loss=loss, loss_by_position=[], wall_time_s=1.0, config={},
        lr=lr, seed=seed))  # fmt: skip


def test_extra_seeds_wait_for_the_first_seed_then_run_only_at_its_best_rate(tmp_path: Path) -> None:
    grid, sweep = load_grid(grid_file(tmp_path)), tmp_path / "sweep"
    runs = plan_runs(grid, sweep, measure=False)
    waiting = sorted(r.name for r in runs if r.waiting)
    # d16 (not a seed size) has the first seed only; d32 waits with seeds 2 and 3 at both budgets, once per seed
    assert waiting == [f"lstm-d32-{b}-lrbest-s{s}" for b in ("1k", "2k") for s in (2, 3)]
    assert {r.name for r in runs if not r.waiting} == {
        f"lstm-{size}-{b}-lr{lr:g}-s1" for size in ("d16", "d32") for b in ("1k", "2k") for lr in LRS
    }
    assert all(r.overrides == [] for r in runs if r.waiting)  # nothing to train: no config yet

    finish(sweep, "lstm-d32-2k-lr0.001-s1", 3.1)  # one of the two choosing runs: still waiting
    assert sum(bool(r.waiting) for r in plan_runs(grid, sweep, measure=False)) == 4
    finish(sweep, "lstm-d32-2k-lr0.003-s1", 2.9)
    runs = plan_runs(grid, sweep, measure=False)
    assert not any(r.waiting for r in runs)
    extra = sorted(r.name for r in runs if r.seed != 1)
    assert extra == [f"lstm-d32-{b}-lr0.003-s{s}" for b in ("1k", "2k") for s in (2, 3)]
    run = next(r for r in runs if r.name == "lstm-d32-1k-lr0.003-s2")
    assert "seed=2" in run.overrides and "optim.lr=0.003" in run.overrides


def test_the_rate_is_chosen_by_the_fits_rule_and_a_broken_record_is_named(tmp_path: Path) -> None:
    grid, sweep = load_grid(grid_file(tmp_path)), tmp_path / "sweep"
    finish(sweep, "lstm-d32-2k-lr0.001-s1", 2.95)
    finish(sweep, "lstm-d32-2k-lr0.003-s1", 3.05)
    chosen = {r.lr for r in plan_runs(grid, sweep, measure=False) if r.seed == 3}
    records = [load_record(sweep / f"lstm-d32-2k-lr{lr:g}-s1" / "result.json") for lr in LRS]
    assert chosen == set(select_best_lr(records)[1].best.values()) == {1e-3}
    # a record the fits could not read (NaN is valid JSON, but not a loss) stops the planner, naming the file
    (sweep / "lstm-d32-2k-lr0.003-s1" / "result.json").write_text('{"final_valid_loss": NaN}')
    with pytest.raises(SweepError, match=r"unreadable record .*delete .*lstm-d32-2k-lr0.003-s1/result.json"):
        plan_runs(grid, sweep, measure=False)
    (sweep / "lstm-d32-2k-lr0.003-s1" / "result.json").write_text("{")
    with pytest.raises(SweepError, match=r"lstm-d32-2k-lr0.003-s1/result.json: not valid JSON"):
        plan_runs(grid, sweep, measure=False)


def test_budget_labels_stay_short_at_gpu_scale() -> None:
    labels = [_budget_label(t) for t in (62_500, 125_000, 1_000_000, 1_500_000, 62_500_000, 1_000_000_000)]
    assert labels == ["62500", "125k", "1M", "1500k", "62.5M", "1000M"]


def test_the_key_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="key 'replicate_best_lr' must be true or false, got 'yes please'"):
        load_grid(grid_file(tmp_path, replicate_best_lr="yes please"))


def test_dry_run_shows_waiting_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sweep", "--grid", str(grid_file(tmp_path)), "--out", str(tmp_path / "sweep"), "--dry-run"]
    assert cli(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "lstm-d32-1k-lrbest-s2" in x)
    assert "waiting: its rate is the best of lstm-d32's first-seed runs at 2,000 tokens" in line


def rec(lr: float, seed: int, loss: float) -> RunRecord:
    return RunRecord(run=f"r{lr}-{seed}", arch="lstm", params=2, non_embedding_params=1, flops_per_token=1.0,
                     tokens=100, compute=100.0, epochs=0.1, final_valid_loss=loss, best_valid_loss=loss,
                     loss_by_position=[], wall_time_s=1.0, config={}, lr=lr, seed=seed)  # fmt: skip


def test_the_fits_choose_the_rate_on_the_seeds_every_rate_ran() -> None:
    # seed 1 prefers 3e-3 (2.90 vs 3.00); its replicas are unlucky, so its 3-seed mean (3.03) exceeds 3.00
    runs = [rec(1e-3, 1, 3.00), rec(3e-3, 1, 2.90), rec(3e-3, 2, 3.10), rec(3e-3, 3, 3.10)]
    kept, scan = select_best_lr(runs)
    assert scan.best == {1: 3e-3} and sorted(r.seed for r in kept) == [1, 2, 3]
    assert scan.loss[1][3e-3] == (pytest.approx(3.0333, abs=1e-4), 3)  # the table still shows every seed


def test_copy_seeds_follow_the_mean_exact_match_over_lengths_not_the_token_accuracy(tmp_path: Path) -> None:
    """A copy run scores every length: its rate is chosen as the capacity report chooses it (exact match averaged
    over lengths), not by per-token accuracy, which long half-copied strings inflate."""
    grid, sweep = load_grid(grid_file(tmp_path)), tmp_path / "sweep"

    def finish_copy(name: str, token_accuracy: float, exact_by_length: list[float]) -> None:
        lr = float(name.split("-lr")[1].split("-s")[0])
        rows = [{"length": k + 1, "strings": 10, "exact": round(10 * e), "exact_match": e}
                for k, e in enumerate(exact_by_length)]  # fmt: skip
        metrics = {"task": "copy", "accuracy": token_accuracy, "by_length": rows}
        save_record(sweep / name / "result.json", RunRecord(
            run=name, arch="lstm", params=2, non_embedding_params=1, flops_per_token=1.0, tokens=2000,
            compute=2000.0, epochs=0.1, final_valid_loss=1.0, best_valid_loss=1.0, loss_by_position=[],
            wall_time_s=1.0, config={}, lr=lr, seed=1, answer_metrics=metrics))  # fmt: skip

    finish_copy("lstm-d32-2k-lr0.001-s1", 0.80, [1.0, 0.2, 0.0])  # more letters right, fewer strings
    finish_copy("lstm-d32-2k-lr0.003-s1", 0.60, [1.0, 0.9, 0.3])
    extra = sorted(r.name for r in plan_runs(grid, sweep, measure=False) if r.seed != 1 and "2k" in r.name)
    assert extra == ["lstm-d32-2k-lr0.003-s2", "lstm-d32-2k-lr0.003-s3"]
