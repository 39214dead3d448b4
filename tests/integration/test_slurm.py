"""`pipeline submit` / `pipeline status` against a real local SLURM cluster (fixture in slurm_cluster.py).

Most jobs run `fake_trainer.py` (same command line as `pipeline train`, no torch), passed through submit's hidden
`--command` option, so they check the templates and SLURM behaviour in seconds; the `slow` ones run the real trainer.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.slurm.status import status_rows
from tests.integration.slurm_cluster import ROOT, LocalSlurm, slurm_cluster_fixture  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm
FAKE = f"{sys.executable} {Path(__file__).with_name('fake_trainer.py')}"


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test submits from its own directory, so nothing a job or sbatch writes lands in the checkout."""
    monkeypatch.chdir(tmp_path)


def write_config(path: Path, run_dir: Path, **extra: object) -> Path:
    path.write_text(json.dumps({"name": run_dir.name, "run_dir": str(run_dir), **extra}))  # JSON is YAML
    return path


def submit(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli(["submit", "--command", FAKE, *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip().splitlines()[-1]


def read_rank(run_dir: Path, rank: int = 0) -> dict:
    return json.loads((run_dir / f"rank{rank}.json").read_text())


def test_single_job_completes_and_status_shows_it(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "single"
    cfg = write_config(tmp_path / "single.yaml", run_dir)
    job_id = submit(capsys, "--config", str(cfg), "fake.steps=4")
    assert (run_dir / "slurm" / "jobs.txt").read_text().split()[0] == job_id
    slurm_cluster.wait(job_id, {"COMPLETED"})

    record = read_rank(run_dir)
    assert record["final_step"] == 4 and record["resume"] == "auto"
    assert "train.num_nodes=1" in record["overrides"] and "train.devices=1" in record["overrides"]
    log = (run_dir / "slurm" / f"{job_id}.out").read_text()
    assert "SLURM_RESTART_COUNT=0" in log

    assert cli(["status", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert job_id in table and "COMPLETED" in table and "2.0000" in table  # loss 10/(4+1) at step 4


def test_two_tasks_both_run(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "two"
    cfg = write_config(tmp_path / "two.yaml", run_dir)
    job_id = submit(capsys, "--config", str(cfg), "--ntasks-per-node", "2", "fake.steps=2")
    slurm_cluster.wait(job_id, {"COMPLETED"})
    records = [read_rank(run_dir, rank) for rank in (0, 1)]
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["ntasks"] == 2 and "train.devices=2" in r["overrides"] for r in records)


def test_array_runs_three_configs(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = write_config(tmp_path / "sweep.yaml", tmp_path / "sweep")
    tasks = []
    for i, name in enumerate(("a", "b", "c")):
        cfg = write_config(tmp_path / f"{name}.yaml", tmp_path / "sweep" / name)
        tasks += ["--task", f"{cfg} fake.steps={i + 1}"]
    job_id = submit(capsys, "--config", str(sweep), *tasks)
    for i in range(3):
        slurm_cluster.wait(f"{job_id}_{i}", {"COMPLETED"})

    for i, name in enumerate(("a", "b", "c")):
        record = read_rank(tmp_path / "sweep" / name)
        assert record["array_task"] == str(i)
        assert record["configs"] == [str(tmp_path / f"{name}.yaml")]
        assert record["final_step"] == i + 1
    assert sorted((tmp_path / "sweep" / "slurm").glob(f"{job_id}_*.out")) != []

    assert cli(["status", str(tmp_path / "sweep")]) == 0
    table = capsys.readouterr().out
    assert all(f"{job_id}_{i}" in table for i in range(3))


def test_usr1_checkpoints_requeues_and_resumes(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "requeue"
    cfg = write_config(tmp_path / "requeue.yaml", run_dir)
    job_id = submit(capsys, "--config", str(cfg), "fake.until_signal=true", "fake.steps=3")
    slurm_cluster.wait(job_id, {"RUNNING"})
    started = run_dir / "started.0.rank0"
    for _ in range(150):
        if started.exists():
            break
        subprocess.run(["sleep", "0.1"])
    assert started.exists(), "payload never started"
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)

    pending = slurm_cluster.wait(job_id, {"PENDING"}, timeout=30)
    assert pending["Restarts"] == "1"
    checkpoint_step = json.loads((run_dir / "ckpt.json").read_text())["step"]
    slurm_cluster.release(job_id)
    slurm_cluster.wait(job_id, {"COMPLETED"}, timeout=60)

    record = read_rank(run_dir)
    assert record["restart_count"] == 1
    assert record["start_step"] == checkpoint_step > 0
    assert record["final_step"] == checkpoint_step + 3
    log = (run_dir / "slurm" / f"{job_id}.out").read_text()
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log  # --open-mode=append kept both


# The real trainer as the payload: `srun <python> -m pipeline train ...`, on the tiny corpus slice.
TINY_LSTM = [str(ROOT / "configs/tiny/base.yaml"), str(ROOT / "configs/tiny/lstm.yaml")]


def submit_trainer(capsys: pytest.CaptureFixture[str], run_dir: Path, data_dir: Path, *argv: str) -> str:
    configs = [x for path in TINY_LSTM for x in ("--config", path)]
    overrides = [f"data.dir={data_dir}", f"run_dir={run_dir}", "train.max_steps=4", "train.bleu_samples=0"]
    assert cli(["submit", *configs, *overrides, *argv]) == 0, capsys.readouterr().err  # argv last: it wins
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.slow
def test_real_trainer_two_tasks_gloo(
    slurm_cluster: LocalSlurm,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--ntasks-per-node 2` on CPU: srun starts both ranks (Lightning spawns none), gloo joins them."""
    run_dir = tmp_path / "real2"
    job_id = submit_trainer(capsys, run_dir, tiny_data, "--ntasks-per-node=2")
    slurm_cluster.wait(job_id, {"COMPLETED"}, timeout=300)
    log = (run_dir / "slurm" / f"{job_id}.out").read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    assert log.count("Initializing distributed") == 2
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


def logged_steps(run_dir: Path) -> list[int]:
    """Steps with a train/loss row, over every CSVLogger version (one per start of the job)."""
    steps = []
    for path in sorted(run_dir.glob("csv/**/metrics.csv")):
        with open(path, newline="") as f:
            steps += [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    return steps


@pytest.mark.slow
def test_real_trainer_single_node_job_requeues_on_usr1_and_resumes(
    slurm_cluster: LocalSlurm,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A single-node CPU job of the real trainer, sent USR1 mid-training: it checkpoints at the next step boundary
    and requeues itself; the restart resumes from that checkpoint and completes; `pipeline status` shows the restart
    and the last step."""
    run_dir = tmp_path / "real-requeue"
    job_id = submit_trainer(capsys, run_dir, tiny_data, "train.max_steps=20", "train.val_every=100")
    slurm_cluster.wait(job_id, {"RUNNING"}, timeout=60)
    for _ in range(600):  # the signal handler is in place once training has logged a step
        if logged_steps(run_dir):
            break
        time.sleep(0.1)
    assert logged_steps(run_dir), "training never logged a step"
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)

    pending = slurm_cluster.wait(job_id, {"PENDING"}, timeout=60)
    assert pending["Restarts"] == "1"
    last = run_dir / "checkpoints" / "last.ckpt"  # saved at a step boundary on USR1, before the requeue
    saved_step = json.loads((run_dir / "checkpoints" / "last.ckpt.meta.json").read_text())["step"]
    assert 0 < saved_step < 20
    slurm_cluster.release(job_id)
    slurm_cluster.wait(job_id, {"COMPLETED"}, timeout=300)

    log = (run_dir / "slurm" / f"{job_id}.out").read_text()
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log
    assert "SIGUSR1: saved" in log and "checkpointed on SIGUSR1: requeueing job" in log, log[-3000:]
    assert f"Restored all states from the checkpoint at {last}" in log, log[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20
    [row] = status_rows([run_dir])
    assert (row.jobs, row.state, row.restarts) == (job_id, "COMPLETED", "1") and row.train_loss != "-"
    assert row.step == "20"  # steps trained (the CSV logs the 0-based index of the step it just took)
