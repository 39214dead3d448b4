"""`pipeline submit` rendering and `pipeline status` parsing, without a cluster (fake sbatch/scontrol on PATH).

Rendered scripts are compared with `tests/golden/*.sbatch` after replacing the temp dir with `<TMP>`; regenerate
them deliberately with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_launch.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.slurm.render import (
    ClusterDefaults,
    LaunchError,
    build_job,
    load_cluster_defaults,
    parse_array_spec,
    render,
    write_tasks,
)
from pipeline.slurm.status import array_task_record, latest_metrics, status_rows

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.fixture(autouse=True)
def no_user_cluster_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the tester's own ~/.config/pipeline/cluster.yaml out of the results."""
    monkeypatch.delenv("PIPELINE_CLUSTER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def check_golden(text: str, tmp_path: Path, name: str) -> None:
    text = text.replace(str(tmp_path), "<TMP>")
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendered script differs from {path} (UPDATE_GOLDEN=1 to accept)"


def config(tmp_path: Path, name: str = "demo", **extra: str) -> str:
    path = tmp_path / f"{name}.yaml"
    # a complete run config: `pipeline submit` loads it like the trainer will before rendering anything
    values = {"name": name, "model": "{arch: lstm, d_model: 32, n_layers: 2}", **extra}
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return str(path)


def test_single_node_matches_golden(tmp_path: Path) -> None:
    job = build_job(ClusterDefaults(), [config(tmp_path)], ["train.max_steps=10"], workdir=tmp_path,
                    python="python", cpus_per_task=4, mem="16G", time="01:00:00", partition="cpu")  # fmt: skip
    text = render(job)
    assert "#SBATCH --signal=USR1@90" in text and "#SBATCH --requeue" in text
    assert f"--output={tmp_path}/runs/demo/slurm/%j.out" in text
    check_golden(text, tmp_path, "single_node.sbatch")


def test_multi_node_one_task_per_gpu_matches_golden(tmp_path: Path) -> None:
    job = build_job(ClusterDefaults(), [config(tmp_path)], [], workdir=tmp_path, python="python",
                    nodes=2, gpus_per_node=4, signal_seconds=120, job_name="big")  # fmt: skip
    text = render(job)
    assert job.template == "multi_node.sbatch"
    assert (
        "#SBATCH --nodes=2" in text
        and "#SBATCH --ntasks-per-node=4" in text
        and "#SBATCH --gpus-per-node=4" in text
    )
    # one srun over every node: a dead task stops the others; each task records its start for `pipeline status`
    assert (
        "\nsrun --kill-on-bad-exit=1 bash -c " in text and "\\\n  python -m pipeline train --config" in text
    )
    assert f"tasks={tmp_path}/runs/demo/slurm/tasks.${{SLURM_JOB_ID}}.${{SLURM_RESTART_COUNT:-0}}" in text
    assert "train.num_nodes=2 train.devices=4" in text and "train.accelerator=cpu" not in text
    check_golden(text, tmp_path, "multi_node.sbatch")


def test_array_matches_golden(tmp_path: Path) -> None:
    sweep = config(tmp_path, "sweep")
    job = build_job(ClusterDefaults(), [sweep], ["train.max_steps=5"], workdir=tmp_path, python="python",
                    array="0-2%2")  # fmt: skip
    text = render(job)
    assert "#SBATCH --array=0-2%2" in text and f"--output={tmp_path}/runs/sweep/slurm/%A_%a.out" in text
    assert f"{tmp_path}/runs/sweep/array_configs.txt" in text
    check_golden(text, tmp_path, "array.sbatch")


def test_cluster_file_defaults_and_flag_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        "partition: p1\naccount: lab\nmodules: [cuda/12.4]\nsetup: ['source ~/venv/bin/activate']\n"
        "container: apptainer exec --nv img.sif\npython: python3\nsbatch_extra: ['--qos=high']\n"
    )
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(cluster))
    assert cli(["submit", "--config", config(tmp_path), "--partition", "p2", "--dry-run"]) == 0
    text = (tmp_path / "runs/demo/slurm/job.sbatch").read_text()
    assert "#SBATCH --partition=p2" in text and "p1" not in text  # the flag wins over the file
    assert "#SBATCH --account=lab" in text and "#SBATCH --qos=high" in text
    assert "module load cuda/12.4\nsource ~/venv/bin/activate" in text
    assert "srun apptainer exec --nv img.sif python3 -m pipeline train" in text


def test_unknown_cluster_key_is_an_error_naming_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("partition: gpu\npartiton: typo\n")
    with pytest.raises(LaunchError, match=r"cluster\.yaml: unknown key 'partiton'"):
        load_cluster_defaults(cluster)
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(cluster))
    assert cli(["submit", "--config", config(tmp_path), "--dry-run"]) == 2
    assert f"{cluster}: unknown key 'partiton'" in capsys.readouterr().err


@pytest.fixture
def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `sbatch` on PATH that records its arguments and answers like `--parsable` on a federated cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls.txt"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "4242;cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_dry_run_prints_script_and_submits_nothing(
    tmp_path: Path, fake_sbatch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["submit", "--config", config(tmp_path), "--dry-run", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash") and "train.max_steps=3" in out
    assert out == (tmp_path / "runs/demo/slurm/job.sbatch").read_text()
    assert not fake_sbatch.exists() and not (tmp_path / "runs/demo/slurm/jobs.txt").exists()

    assert cli(["submit", "--config", config(tmp_path)]) == 0  # the same without --dry-run does submit
    assert capsys.readouterr().out.strip() == "4242"
    assert fake_sbatch.read_text().split() == ["--parsable", str(tmp_path / "runs/demo/slurm/job.sbatch")]
    assert (tmp_path / "runs/demo/slurm/jobs.txt").read_text().startswith("4242\t")


def test_task_flags_write_the_task_file_and_imply_the_array(
    tmp_path: Path, fake_sbatch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = config(tmp_path, "a"), config(tmp_path, "b")
    argv = ["submit", "--config", config(tmp_path, "sweep"), "--task", f"{a} optim.lr=1e-3", "--task", b]
    assert cli(argv) == 0
    assert (tmp_path / "runs/sweep/array_configs.txt").read_text() == f"{a} optim.lr=1e-3\n{b}\n"
    assert "#SBATCH --array=0-1" in (tmp_path / "runs/sweep/slurm/job.sbatch").read_text()
    # every task line is loaded like the trainer will: a bad key or value fails here, naming the task
    capsys.readouterr()
    bad = [
        "submit",
        "--config",
        config(tmp_path, "sweep"),
        "--task",
        a,
        "--task",
        f"{b} optim.lr=-1",
        "--dry-run",
    ]
    assert cli(bad) == 2
    err = capsys.readouterr().err
    assert "array_configs.txt task 1:" in err and "optim.lr" in err


def test_bad_combinations_are_clear_errors(tmp_path: Path) -> None:
    cfg = [config(tmp_path)]
    with pytest.raises(LaunchError, match="one task per GPU"):
        build_job(ClusterDefaults(), cfg, gpus_per_node=4, tasks_per_node=2)
    with pytest.raises(LaunchError, match="config file not found: nope.yaml"):
        build_job(ClusterDefaults(), ["nope.yaml"])
    write_tasks(tmp_path / "runs/sweep/array_configs.txt", [[config(tmp_path, "a")], [config(tmp_path, "b")]])
    assert cli(["submit", "--config", config(tmp_path, "sweep"), "--array", "0-2", "--dry-run"]) == 2
    with pytest.raises(LaunchError, match="expected e.g."):
        parse_array_spec("zero-two")
    assert parse_array_spec("0-4:2,7%3") == [0, 2, 4, 7]


def test_latest_metrics_reads_lightning_csv(tmp_path: Path) -> None:
    assert latest_metrics(tmp_path) == ("-", "-", "-")
    path = tmp_path / "csv" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text("epoch,step,train/loss,valid/loss\n0,10,5.5,\n0,20,4.25,\n0,20,,4.75\n0,30,3.5,\n")
    assert latest_metrics(tmp_path) == ("31", "3.5000", "4.7500")  # logged under step 30 = 31 steps trained


def test_status_of_forgotten_job_and_pending_array_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    )
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    run = tmp_path / "runs" / "old"
    (run / "slurm").mkdir(parents=True)
    (run / "slurm" / "jobs.txt").write_text("7\t2026-01-01T00:00:00\tjob.sbatch\n")
    [row] = status_rows([run])
    assert (row.jobs, row.state, row.step) == ("7", "finished/unknown", "-")
    assert cli(["status"]) == 0  # default: every run under runs/ with a jobs.txt
    assert "finished/unknown" in capsys.readouterr().out

    records = [{"ArrayTaskId": "0", "JobState": "RUNNING"}, {"ArrayTaskId": "1-2", "JobState": "PENDING"}]
    assert array_task_record(records, 2) == records[1] and array_task_record(records, 3) is None


def test_status_names_nodes_of_a_running_multi_node_job_without_a_started_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multi-node template records each task's start; a RUNNING job's node without a record is named."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = "JobId=9 JobState=RUNNING Restarts=1 NumNodes=2 NodeList=n[1-2] StartTime=2026-01-01T00:00:00"
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\nif [ "$2" = hostnames ]; then printf "n1\\nn2\\n"; else echo "{record}"; fi\n'
    )
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    job = build_job(ClusterDefaults(), [config(tmp_path)], [], workdir=tmp_path, python="python", nodes=2)
    job.slurm_dir.mkdir(parents=True)
    (job.slurm_dir / "job.sbatch").write_text(render(job))
    (job.slurm_dir / "jobs.txt").write_text("9\t2026-01-01T00:00:00\tjob.sbatch\n")
    (job.slurm_dir / "tasks.9.0").write_text("n1 0 100 0\nn2 1 101 0\n")  # the first start: both ran
    (job.slurm_dir / "tasks.9.1").write_text("n1 0 200 0\n")  # this start (Restarts=1): n2 never did
    [row] = status_rows([job.run_dir])
    assert row.state.startswith("RUNNING (n2: task not started after ") and row.state.endswith(" s)")
    (job.slurm_dir / "tasks.9.1").write_text("n1 0 200 0\nn2 1 201 0\n")
    assert status_rows([job.run_dir])[0].state == "RUNNING"
