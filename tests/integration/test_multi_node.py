"""`pipeline submit --nodes 2` on a real two-node SLURM cluster (two slurmds, n1 and n2, fixture in slurm_cluster.py).

Every job runs the real trainer, 2 nodes x 1 task over gloo, on the tiny corpus slice. The reference is a plain
single-node 2-process run (`pipeline train train.devices=2`, Lightning starts rank 1) on the same batches: on CPU in
deterministic mode a 2-node run must end with the same weights bit for bit, and so must a run whose node n2 was
killed with SIGKILL and that SLURM requeued and resumed. ZeRO-3 (with a USR1 -> checkpoint -> requeue cycle) is
compared with DDP with a tolerance: same averaged gradients, different summation order (see test_deepspeed.py).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.cli import main as cli
from pipeline.slurm.status import status_rows, task_file
from pipeline.training.exported_weights import consolidate
from pipeline.training.logged_metrics import metrics_files, read_metric
from pipeline.training.wandb_files import offline_run_files, read_offline_run
from tests.integration.slurm_cluster import (  # noqa: F401  (the fixture)
    ROOT,
    LocalSlurm,
    two_node_cluster_fixture,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CONFIGS = [str(ROOT / "configs/tiny/base.yaml"), str(ROOT / "configs/tiny/lstm.yaml")]
STEPS = 16
# ckpt_every=4: the SIGKILL lands after a complete checkpoint, with steps left to redo; dropout on so the resumed
# run must also restore every rank's RNG state; W&B on (offline) to check it is written once.
ARGS = (
    f"train.max_steps={STEPS}", "train.ckpt_every=4", "train.val_every=12", "train.deterministic=true",
    "train.bleu_samples=0", "model.dropout=0.1", "train.log_every=1", "logging.wandb=true",
)  # fmt: skip
ZERO3 = ("train.strategy=deepspeed", "train.zero_stage=3")
# ZeRO-3 vs DDP weights after 16 Adam steps: measured max abs difference 0.0 here (2 ranks: a sum of two terms
# does not depend on the order); the tolerance allows for DeepSpeed's bucketed reduce-scatter elsewhere
ZERO_RTOL, ZERO_ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True)
def _job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch passes the submitting environment on to the jobs: one thread per rank (2 slurmds and gloo ranks
    share 2 cores), offline W&B, DeepSpeed's compiled ops from the tests' cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv(
        "TORCH_EXTENSIONS_DIR", os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache/torch_extensions"))
    )


def submit(capsys: pytest.CaptureFixture[str], run_dir: Path, data: Path, *argv: str) -> str:
    configs = [x for path in CONFIGS for x in ("--config", path)]
    overrides = [f"data.dir={data}", f"run_dir={run_dir}", *ARGS, *argv]
    assert cli(["submit", *configs, "--nodes", "2", *overrides]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip().splitlines()[-1]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The run's last checkpoint as one fp32 state dict (`pipeline export`'s consolidation; ZeRO shards too)."""
    blob = consolidate(run_dir / "checkpoints" / "last.ckpt")
    assert blob["step"] == STEPS
    return blob["model"]


def started_tasks(run_dir: Path, job_id: str, restart: int = 0) -> dict[str, tuple[int, int]]:
    """{node: (rank, pid)} from the start records the template's tasks write."""
    path = task_file(run_dir, job_id, str(restart))
    lines = [line.split() for line in path.read_text().splitlines()] if path.is_file() else []
    return {node: (int(rank), int(pid)) for node, rank, pid, _ in lines}


def wait_for(what: str, predicate, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def job_log(run_dir: Path, job_id: str) -> str:
    return (run_dir / "slurm" / f"{job_id}.out").read_text()


@pytest.fixture(scope="module")
def reference(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Single node, 2 processes, no SLURM: the run every 2-node job must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    cmd = [sys.executable, "-m", "pipeline", "train", *[x for p in CONFIGS for x in ("--config", p)],
           f"data.dir={tiny_data}", f"run_dir={run_dir}", *ARGS, "train.devices=2", "train.accelerator=cpu"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**env, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def assert_same_weights(reference: Path, run_dir: Path) -> None:
    a, b = final_weights(reference), final_weights(run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs from the single-node 2-process run"


def test_ddp_on_two_nodes_equals_one_node_two_processes_and_logs_once(
    two_node_cluster: LocalSlurm, tiny_data: Path, reference: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run_dir = tmp_path / "ddp"
    job_id = submit(capsys, run_dir, tiny_data)
    two_node_cluster.wait(job_id, {"COMPLETED"}, timeout=300)

    log = job_log(run_dir, job_id)
    assert started_tasks(run_dir, job_id).keys() == {"n1", "n2"}, log[-3000:]
    assert {node: rank for node, (rank, _) in started_tasks(run_dir, job_id).items()} == {"n1": 0, "n2": 1}
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    assert_same_weights(reference, run_dir)
    assert (
        sorted(p.name for p in (run_dir / "checkpoints").glob("step=*.ckpt")) != []
    )  # in the shared run dir

    # logs written once, by rank 0: one CSV and one offline W&B run, one row per step, the reference's losses
    [metrics] = metrics_files(run_dir)
    with metrics.open(newline="") as f:
        train_rows = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert train_rows == list(range(STEPS))
    assert read_metric(run_dir, "train/loss") == read_metric(reference, "train/loss")
    [wandb_file] = offline_run_files(run_dir)
    wandb_run = read_offline_run(wandb_file)
    assert wandb_run.run_ids == [(run_dir / "wandb_id").read_text().strip()]
    assert max(wandb_run.steps) == STEPS - 1


def test_sigkill_of_one_node_requeues_and_resumes_to_the_same_weights(
    two_node_cluster: LocalSlurm, tiny_data: Path, reference: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """n2's task is SIGKILLed after the step-4 checkpoint: srun stops n1's task, the template requeues the job, the
    next start (both nodes again) resumes from the last complete checkpoint and ends where the straight run did."""
    run_dir = tmp_path / "killed"
    job_id = submit(capsys, run_dir, tiny_data)  # W&B on: the requeued attempt must get its run id back
    two_node_cluster.wait(job_id, {"RUNNING"}, timeout=60)
    meta = run_dir / "checkpoints" / "step=4.ckpt.meta.json"
    wait_for("the step-4 checkpoint", lambda: meta.exists() and len(started_tasks(run_dir, job_id)) == 2)
    rank, pid = started_tasks(run_dir, job_id)["n2"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"SLURMD_NODENAME=n2" in environ and rank == 1
    assert not (run_dir / "summary.json").exists(), "the run ended before the kill: make it longer"
    os.kill(pid, signal.SIGKILL)

    pending = two_node_cluster.wait(job_id, {"PENDING"}, timeout=60)
    assert pending["Restarts"] == "1"
    two_node_cluster.release(job_id)
    two_node_cluster.wait(job_id, {"COMPLETED"}, timeout=300)

    log = job_log(run_dir, job_id)
    assert "n2: task 1: Killed" in log and "a task was killed" in log, log[-3000:]
    assert "Restored all states from the checkpoint" in log, log[-3000:]
    assert started_tasks(run_dir, job_id, restart=1).keys() == {"n1", "n2"}
    assert_same_weights(reference, run_dir)
    assert read_metric(run_dir, "train/loss") == read_metric(reference, "train/loss")
    # both attempts wrote to the one W&B run (before `drop_borrowed_wandb_service`, the attempt after the requeue
    # joined pytest's W&B service, which still held the killed attempt's stream: "run ID ... is in use")
    attempts = [read_offline_run(f) for f in offline_run_files(run_dir)]
    run_id = (run_dir / "wandb_id").read_text().strip()
    assert len(attempts) == 2 and attempts[-1].run_ids == [run_id]
    assert attempts[0].run_ids in ([], [run_id])  # the killed attempt's file may end before its run record
    assert max(attempts[-1].steps) == STEPS - 1


def test_zero3_on_two_nodes_usr1_checkpoints_both_at_one_step_and_requeues_once(
    two_node_cluster: LocalSlurm, tiny_data: Path, reference: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """ZeRO-3 over 2 nodes, USR1 (what `--signal=USR1@N` sends before the time limit) mid-run: both ranks get it,
    agree on one step, both write their shard of that step's checkpoint, the job requeues once and resumes."""
    run_dir = tmp_path / "zero3"
    job_id = submit(capsys, run_dir, tiny_data, *ZERO3)
    two_node_cluster.wait(job_id, {"RUNNING"}, timeout=60)
    wait_for("a logged training step", lambda: bool(read_metric(run_dir, "train/loss")), timeout=300)
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)

    pending = two_node_cluster.wait(job_id, {"PENDING"}, timeout=120)
    assert pending["Restarts"] == "1"
    log = job_log(run_dir, job_id)
    assert log.count("received SIGUSR1") == 2, log[-3000:]  # one per node's task
    saved = json.loads((run_dir / "checkpoints" / "last.ckpt.meta.json").read_text())["step"]
    assert 0 < saved < STEPS
    shards = sorted(
        p.name for p in (run_dir / "checkpoints" / "last.ckpt").glob("*/zero_pp_rank_*_optim_states.pt")
    )
    assert shards == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    two_node_cluster.release(job_id)
    done = two_node_cluster.wait(job_id, {"COMPLETED"}, timeout=300)

    assert done["Restarts"] == "1"
    log = job_log(run_dir, job_id)
    assert "SLURM_RESTART_COUNT=1" in log and "SLURM_RESTART_COUNT=2" not in log
    assert log.count("checkpointed on SIGUSR1: requeueing") == 1 and "a task was killed" not in log, log[
        -3000:
    ]
    assert started_tasks(run_dir, job_id, restart=1).keys() == {"n1", "n2"}
    ddp, zero = final_weights(reference), final_weights(run_dir)
    assert ddp.keys() == zero.keys()
    for key in ddp:
        torch.testing.assert_close(zero[key], ddp[key], rtol=ZERO_RTOL, atol=ZERO_ATOL, msg=key)


def _slurmd_pid(cluster: LocalSlurm, node: str) -> int:
    for line in (cluster.state_dir / "pids").read_text().splitlines():
        name, pid = line.split()
        if name == "slurmd" and f"\0-N\0{node}\0" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(pid)
    raise AssertionError(f"no slurmd for {node} in {cluster.state_dir / 'pids'}")


def test_status_names_the_node_whose_task_never_started(
    two_node_cluster: LocalSlurm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """n2's slurmd is frozen (SIGSTOP): the job is RUNNING, n1's task runs and waits, n2's never starts. Without
    the start records this looks like a healthy running job; `pipeline status` must name n2. Last in the module:
    the frozen node is thawed and the job cancelled before the cluster is torn down."""
    run_dir = tmp_path / "stuck"
    config = tmp_path / "stuck.yaml"
    config.write_text(json.dumps({"name": "stuck", "run_dir": str(run_dir)}))
    slurmd = _slurmd_pid(two_node_cluster, "n2")
    os.kill(slurmd, signal.SIGSTOP)
    job_id = None
    try:
        argv = ["submit", "--config", str(config), "--nodes", "2", "--command", "bash -c 'sleep 120' payload"]
        assert cli(argv) == 0, capsys.readouterr().err
        job_id = capsys.readouterr().out.strip().splitlines()[-1]
        two_node_cluster.wait(job_id, {"RUNNING"}, timeout=60)
        wait_for("n1's task", lambda: "n1" in started_tasks(run_dir, job_id), timeout=60)
        time.sleep(1)
        [row] = status_rows([run_dir])
        assert row.state.startswith("RUNNING (n2: task not started after "), row.state
        assert cli(["status", str(run_dir)]) == 0
        assert "n2: task not started" in capsys.readouterr().out
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], check=False)
        os.kill(slurmd, signal.SIGCONT)
    two_node_cluster.wait(job_id, {"CANCELLED"}, timeout=60)
    wait_for("both nodes idle", lambda: subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True,
             text=True).stdout.split() == ["idle", "idle"], timeout=60)  # fmt: skip


def test_shards_unreadable_on_one_node_is_one_error_naming_node_and_path(
    two_node_cluster: LocalSlurm, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The train shards directory is unreadable on n2 only (mode 000: n1's tasks run as full root, n2's without
    the capability to ignore file modes, see slurm_local.sh). The job fails once, not requeued, and its log has one
    error line about that directory, prefixed with the node that hit it."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shards = data / "train"
    shards.chmod(0)
    try:
        run_dir = tmp_path / "unreadable"
        job_id = submit(capsys, run_dir, data, "train.max_steps=2")
        failed = two_node_cluster.wait(job_id, {"FAILED"}, timeout=300)
    finally:
        shards.chmod(0o755)
    log = job_log(run_dir, job_id)
    errors = [line for line in log.splitlines() if str(shards) in line]
    assert len(errors) == 1, log[-3000:]
    assert errors[0].startswith("[n2] ") and "error" in errors[0] and "Permission denied" in errors[0], errors
    assert (
        failed["Restarts"] == "0" and "requeueing" not in log
    )  # an error of its own: a restart would fail again
