"""`pipeline sweep` end to end on the tiny corpus: grid -> runs -> records -> fit -> report, resume, failures,
the SLURM array rendering and its per-task entry point, and grid-file errors."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.scaling.records.sweep_dir import load_sweep
from tests.conftest import ROOT
from tests.integration.slurm_cluster import LocalSlurm, slurm_cluster_fixture  # noqa: F401  (the fixture)

TINY_GRID = ROOT / "configs/sweeps/tiny.yaml"
ARCHS = ("lstm", "residual_lstm", "transformer")


def write_grid(path: Path, data_dir: Path, **changes: object) -> Path:
    """The shipped tiny grid, pointed at the test's corpus copy (absolute base path, data.dir set)."""
    grid = yaml.safe_load(TINY_GRID.read_text())
    grid["base"] = str(ROOT / grid["base"])
    grid["set"] = {**grid["set"], "data.dir": str(data_dir)}
    grid.update(changes)
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def swept(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny grid (3 architectures x 2 sizes x 1 budget), run once for the tests below."""
    tmp = tmp_path_factory.mktemp("sweep")
    grid = write_grid(tmp / "grid.yaml", tiny_data)
    assert cli(["sweep", "--grid", str(grid), "--out", str(tmp / "sweep")]) == 0
    return grid, tmp / "sweep"


def test_tiny_sweep_writes_records_and_fits_to_a_report(
    swept: tuple[Path, Path], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sweep = swept
    loaded = load_sweep(sweep)
    assert loaded.skipped == []
    assert sorted(r.run for r in loaded.records) == sorted(
        f"{a}-{s}-1500" for a in ARCHS for s in ("d16", "d32")
    )
    manifest = json.loads((tiny_data / "manifest.json").read_text())["splits"]["train"]
    corpus_tokens = manifest["tgt_tokens"] + manifest["samples"]  # the trained targets include EOS
    for r in loaded.records:
        assert r.tokens >= 1500  # the budget, rounded up to whole validation intervals
        assert r.epochs == pytest.approx(r.tokens / corpus_tokens)
        assert r.compute == pytest.approx(r.flops_per_token * r.tokens)
        assert r.best_valid_loss <= r.final_valid_loss
        assert r.config["train"]["max_steps"] == 2 * r.config["train"]["val_every"]  # evals_per_run: 2
        assert r.config["train"]["bleu_samples"] == 0 and r.wall_time_s > 0
        measured = [x == x for x in r.loss_by_position]  # NaN where < 10 % of validation pairs reach t
        assert measured[:3] == [True] * 3 and not measured[-1] and measured == sorted(measured, reverse=True)
    by_arch = {a: sorted(r.non_embedding_params for r in loaded.records if r.arch == a) for a in ARCHS}
    assert all(small < large for small, large in by_arch.values())
    assert (
        len({r.tokens for r in loaded.records}) == 1
    )  # same seeded stream: one budget = same tokens for all

    # Seconds of training on 1,500 tokens learn no more than token frequencies: every record says so, and the
    # fit leaves them all out and counts them.
    assert all(r.unigram_entropy and r.final_valid_loss >= r.unigram_entropy for r in loaded.records)
    assert all(r.unigram_xent >= r.unigram_entropy for r in loaded.records)  # Gibbs: H(q, p_train) >= H(q)
    assert all(
        r.seed == 7 and r.lr and r.valid_curve and r.timing["tokens_per_s"] > 0 for r in loaded.records
    )
    assert {r.hardware["device_type"] for r in loaded.records} == {"cpu"}
    assert cli(["scaling", "fit", str(sweep), "--n-boot", "10", "--out", str(sweep.parent / "flagged")]) == 2
    assert (
        "every run learned nothing (final loss >= unigram entropy): nothing to fit" in capsys.readouterr().err
    )

    # The fitting path itself, on the same records as if they carried no entropy (records written before it).
    unflagged = sweep.parent / "unflagged"
    shutil.copytree(sweep, unflagged)
    for path in unflagged.glob("*/result.json"):
        record = json.loads(path.read_text())
        record.pop("unigram_entropy")
        record.pop("unigram_xent")  # the learned-nothing yardstick: absent from old records as well
        path.write_text(json.dumps(record))
    sweep = unflagged
    assert cli(["scaling", "fit", str(sweep), "--n-boot", "10"]) == 0
    fit = json.loads((sweep / "fit.json").read_text())
    assert fit["n_runs"] == 6 and sorted(fit["archs"]) == list(ARCHS)
    assert fit["archs"]["lstm"]["fits"]["chinchilla"]["underdetermined"]  # one budget, two sizes: said so
    report_dir = sweep.parent / "report"
    assert cli(["scaling", "report", str(sweep), "--out", str(report_dir), "--n-boot", "10"]) == 0
    assert (report_dir / "fit.json").is_file() and (report_dir / "report.md").is_file()
    text = (report_dir / "report.md").read_text()
    assert "6 finished runs" in text and "plans 6 runs, so 0 have no result yet" in text
    assert "underdetermined" in text
    for png in ("loss_vs_params", "loss_vs_compute", "loss_vs_position", "position_ratio"):
        assert (report_dir / f"{png}.png").stat().st_size > 1000


def test_rerun_skips_finished_runs_and_rebuilds_a_lost_record(
    swept: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    grid, sweep = swept
    capsys.readouterr()
    records = sorted(sweep.glob("*/result.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    lost = sweep / "lstm-d16-1500" / "result.json"
    old = json.loads(lost.read_text())
    lost.unlink()  # a run that trained to the end but died before writing its record
    assert cli(["sweep", "--grid", str(grid), "--out", str(sweep)]) == 0
    assert "1 trained, 5 already finished, 0 failed" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != lost)
    new = json.loads(lost.read_text())  # resumed from the final checkpoint: no further training
    assert new["tokens"] == old["tokens"] and new["final_valid_loss"] == pytest.approx(
        old["final_valid_loss"]
    )


def test_failed_run_is_recorded_and_the_sweep_goes_on(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.training.trainer

    real_fit = pipeline.training.trainer.fit

    def fit(cfg, *args, **kwargs):
        if cfg.model["arch"] == "lstm":
            raise RuntimeError("simulated crash")
        return real_fit(cfg, *args, **kwargs)

    monkeypatch.setattr(pipeline.training.trainer, "fit", fit)
    grid = write_grid(tmp_path / "grid.yaml", tiny_data)
    argv = [
        "sweep",
        "--grid",
        str(grid),
        "--out",
        str(tmp_path / "s"),
        "--only",
        "lstm-d16",
        "--only",
        "mer-d16",
    ]
    assert cli(argv) == 1
    out = capsys.readouterr().out
    # lstm-d16 failed; residual_lstm-d16 and transformer-d16 ran
    assert "2 trained, 0 already finished, 1 failed" in out
    assert "lstm-d16-1500: RuntimeError: simulated crash" in out
    assert "simulated crash" in (tmp_path / "s/lstm-d16-1500/error.txt").read_text()
    assert (tmp_path / "s/transformer-d16-1500/result.json").is_file()
    assert (tmp_path / "s/residual_lstm-d16-1500/result.json").is_file()


def local_steps(grid: Path, sweep: Path) -> dict[str, int]:
    """max_steps of every run as a local `pipeline sweep` plans them (measured afresh: its own sweep dir)."""
    from pipeline.sweep.grid import load_grid, plan_runs

    return {r.name: r.max_steps for r in plan_runs(load_grid(grid), sweep, 1, measure=True)}


def test_slurm_dry_run_then_the_plan_step_sets_each_task_s_steps_and_a_task_trains(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_data)
    sweep = tmp_path / "s"
    argv = ["sweep", "--grid", str(grid), "--out", str(sweep), "--slurm", "--dry-run", "--max-parallel", "2"]
    assert cli(argv) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-5%2" in script and "sweep --run-one" in script and "--plan-array" in script
    lines = (sweep / "array_configs.txt").read_text().splitlines()
    assert len(lines) == 6
    tasks = [shlex.split(line) for line in lines]
    assert [w for w in tasks[0] if w.startswith("run_dir=")] == [
        f"run_dir={sweep.resolve() / 'lstm-d16-1500'}"
    ]
    assert not any(w.startswith("train.max_steps=") for t in tasks for w in t)  # measured by the plan job

    # what the plan job runs (its command line from the rendered script), here without SLURM
    assert cli(["sweep", "--plan-array", "--grid", str(grid), "--out", str(sweep), "--world", "1"]) == 0
    tasks = [shlex.split(line) for line in (sweep / "array_configs.txt").read_text().splitlines()]
    steps = {t[-1].rsplit("/", 1)[1]: int(w.split("=")[1]) for t in tasks for w in t if "max_steps=" in w}
    assert steps == local_steps(grid, tmp_path / "local") and len(steps) == 6
    assert json.loads((sweep / "plan.json").read_text())["runs"][0]["max_steps"] == steps["lstm-d16-1500"]

    # what array task 0 runs (the template splits a line into --config files and key=value overrides)
    configs = [x for w in tasks[0] if "=" not in w for x in ("--config", w)]
    overrides = [w for w in tasks[0] if "=" in w]
    assert cli(["sweep", "--run-one", *configs, "--resume", "auto", "train.accelerator=cpu", *overrides]) == 0
    record = json.loads((sweep / "lstm-d16-1500/result.json").read_text())
    assert record["config"]["train"]["max_steps"] == steps["lstm-d16-1500"]


def submitted_ids(out: str) -> tuple[str, str]:
    """(plan job id, array job id) from `pipeline sweep --slurm`'s two lines."""
    plan_line, array_line = out.strip().splitlines()[-2:]
    assert plan_line.startswith("plan job ")
    return plan_line.split()[2].rstrip(":"), array_line.split(":")[0]


@pytest.mark.slurm
def test_slurm_sweep_submits_without_data_work_and_the_plan_job_sets_the_local_steps(
    slurm_cluster: LocalSlurm, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from pipeline.sweep.grid import TOKENS_CACHE

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"  # prepared by the plan job, on the cluster
    grid = write_grid(tmp_path / "grid.yaml", data)
    sweep = tmp_path / "s"
    argv = ["sweep", "--grid", str(grid), "--out", str(sweep), "--only", "lstm-d16", "--slurm"]
    monkeypatch.setenv("SBATCH_HOLD", "1")  # held: nothing can start before the checks below
    assert cli(argv) == 0
    monkeypatch.delenv("SBATCH_HOLD")
    plan_id, job_id = submitted_ids(capsys.readouterr().out)
    assert not data.exists() and not (sweep / TOKENS_CACHE).exists()  # the submit did no data work
    assert slurm_cluster.job(job_id)["Dependency"].startswith(f"afterok:{plan_id}")
    subprocess.run(["scontrol", "release", plan_id, job_id], check=True)

    slurm_cluster.wait(plan_id, {"COMPLETED"}, timeout=240)
    for task in range(2):  # lstm-d16 and residual_lstm-d16
        slurm_cluster.wait(f"{job_id}_{task}", {"COMPLETED"}, timeout=240)
    records = load_sweep(sweep).records
    assert sorted(r.run for r in records) == ["lstm-d16-1500", "residual_lstm-d16-1500"]
    steps = local_steps(grid, tmp_path / "local")
    assert all(r.config["train"]["max_steps"] == steps[r.run] > 0 for r in records)
    assert (sweep / TOKENS_CACHE).is_file() and len(
        json.loads((sweep / "plan.json").read_text())["runs"]
    ) == 6

    assert cli(["status", str(sweep)]) == 0
    table = capsys.readouterr().out
    assert "(plan job)" in table and table.count("COMPLETED") == 3
    assert cli(argv) == 0
    assert "nothing to submit" in capsys.readouterr().out


@pytest.mark.slurm
def test_slurm_sweep_whose_plan_job_fails_never_runs_and_status_names_the_log(
    slurm_cluster: LocalSlurm, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    grid = write_grid(tmp_path / "grid.yaml", tmp_path / "a_file" / "data")  # cannot be created
    sweep = tmp_path / "s"
    assert cli(["sweep", "--grid", str(grid), "--out", str(sweep), "--only", "lstm-d16", "--slurm"]) == 0
    plan_id, job_id = submitted_ids(capsys.readouterr().out)
    slurm_cluster.wait(plan_id, {"FAILED"}, timeout=120)
    record = slurm_cluster.wait(job_id, {"CANCELLED"}, timeout=60)
    assert "DependencyNeverSatisfied" in record["Reason"]
    assert not (sweep / "lstm-d16-1500").exists()  # no task ran
    log = sweep / "slurm/plan/slurm" / f"{plan_id}.out"
    assert "a_file" in log.read_text()
    assert cli(["status", str(sweep)]) == 0
    table = capsys.readouterr().out.replace("\n", "")
    assert "FAILED" in table and f"{plan_id}.out" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_budget": [10]}, "unknown key 'token_budget'"),
        ({"token_budgets": [0]}, "key 'token_budgets' holds 0"),
        ({"archs": {"gru": {"sizes": {"s": {"d_model": 8}}}}}, "key 'archs.gru': unknown architecture"),
        ({"archs": {"lstm": {"sizes": {"s": {"d_modle": 8}}}}}, "key 'archs.lstm.sizes.s': unknown key"),
        ({"set": {"train.max_stps": 3}}, "key 'set': unknown config key 'train.max_stps'"),
    ],
)
def test_bad_grid_file_is_a_clear_error(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, message: str
) -> None:
    grid = write_grid(tmp_path / "grid.yaml", tiny_data, **change)
    assert cli(["sweep", "--grid", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(grid) in err


def test_replicated_seeds_train_in_the_same_sweep_once_the_first_seed_chose_their_rate(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archs = {"lstm": {"model": {"attention": True}, "sizes": {"d16": {"d_model": 16, "n_layers": 1}}}}
    grid = write_grid(tmp_path / "grid.yaml", tiny_data, archs=archs, seeds=[1, 2], lrs=[1e-3, 3e-2],
                      replicate_best_lr=True)  # fmt: skip
    assert cli(["sweep", "--grid", str(grid), "--out", str(tmp_path / "sweep")]) == 0
    records = {r.run: r for r in load_sweep(tmp_path / "sweep").records}
    first = {lr: records[f"lstm-d16-1500-lr{lr:g}-s1"].final_valid_loss for lr in (1e-3, 3e-2)}
    best = min(first, key=first.__getitem__)
    assert sorted(records) == sorted([f"lstm-d16-1500-lr{lr:g}-s1" for lr in (1e-3, 3e-2)]
                                     + [f"lstm-d16-1500-lr{best:g}-s2"])  # fmt: skip
    assert records[f"lstm-d16-1500-lr{best:g}-s2"].seed == 2
    plan = json.loads((tmp_path / "sweep" / "plan.json").read_text())["runs"]
    assert len(plan) == 3 and not any("waiting" in r for r in plan)  # rewritten once the rate was known
