"""`pipeline sweep --slurm --dry-run`: renders the plan job and the array that waits for it, and does no data work
(no data directory, no token cache, no plan.json) on the submitting node. The real submission: test_sweep.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.sweep.grid import TOKENS_CACHE
from tests.conftest import ROOT


def test_slurm_dry_run_prints_plan_and_dependent_array_and_measures_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    data = tmp_path / "data"  # not prepared: a submit that prepared or measured it would create it
    grid["base"] = str(ROOT / grid["base"])
    grid["set"] = {**grid["set"], "data.dir": str(data)}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    cluster = tmp_path / "cluster.yaml"  # a GPU cluster: the array gets the GPUs, the plan job none
    cluster.write_text(yaml.safe_dump({"gpus_per_node": 4, "time": "24:00:00", "partition": "gpu"}))
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(cluster))
    sweep = tmp_path / "s"

    argv = ["sweep", "--grid", str(tmp_path / "grid.yaml"), "--out", str(sweep), "--slurm", "--dry-run"]
    assert cli([*argv, "--plan-time", "0:30:00", "--max-parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert not data.exists() and not (sweep / TOKENS_CACHE).exists() and not (sweep / "plan.json").exists()

    plan, array = out.split("#!/bin/bash")[1:]  # exactly two scripts, the plan job's first
    assert "#SBATCH --job-name=plan-tiny" in plan and "--plan-array" in plan and "--world 4" in plan
    assert "#SBATCH --time=0:30:00" in plan and "--gpus-per-node" not in plan
    assert "#SBATCH --array=0-5%2" in array and "#SBATCH --gpus-per-node=4" in array
    assert (
        "#SBATCH --dependency=afterok:PLAN_JOB_ID" in array and "#SBATCH --kill-on-invalid-dep=yes" in array
    )
    assert "sweep --run-one" in array and "#SBATCH --time=24:00:00" in array
    assert (sweep / "slurm/job.sbatch").read_text() == "#!/bin/bash" + array
    assert (sweep / "slurm/plan/slurm/job.sbatch").read_text() == "#!/bin/bash" + plan

    # one line per run, written with what is known before measuring: no steps yet (the plan job adds them)
    tasks = [shlex.split(line) for line in (sweep / "array_configs.txt").read_text().splitlines()]
    assert len(tasks) == 6 and tasks[0][-1] == f"run_dir={sweep.resolve() / 'lstm-d16-1500'}"
    assert not any(w.startswith("train.max_steps=") for t in tasks for w in t)


def test_slurm_submit_with_a_bad_cluster_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("partiton: gpu\n")
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(cluster))
    argv = [
        "sweep",
        "--grid",
        str(ROOT / "configs/sweeps/tiny.yaml"),
        "--out",
        str(tmp_path / "s"),
        "--slurm",
    ]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pipeline sweep: error:") and str(cluster) in err and "partiton" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "s/slurm").exists()
    cluster.write_text("partition: gpu\n")
    assert cli([*argv, "--plan-cpus", "0", "--dry-run"]) == 2  # a bad plan-job flag names itself
    assert "--plan-cpus must be an integer >= 1, got 0" in capsys.readouterr().err
    assert cli([*argv, "--plan-time", "1h", "--dry-run"]) == 2
    assert "--plan-time '1h' is not a SLURM time" in capsys.readouterr().err
