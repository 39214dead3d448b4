"""`pipeline data prepare --slurm` on a real local SLURM cluster (fixture in slurm_cluster.py): the array of range
tasks and the merge job write the same shards and manifest, byte for byte, as a local run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.data.prepare.build import prepare
from pipeline.data.prepare.staged import staged_dir
from pipeline.data.sources.corpus import CorpusSource
from pipeline.slurm import submit
from tests.integration.slurm_cluster import LocalSlurm, slurm_cluster_fixture  # noqa: F401  (the fixture)
from tests.unit.data_fixtures import write_parallel

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
ARGS = {"vocab_size": 300, "max_len": 64, "shard_size": 300, "seed": 5}


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def job_ids(printed: str) -> tuple[str, str]:
    """(encode array id, merge job id) from what `pipeline data prepare --slurm` printed."""
    encode = re.search(r"^(\d+): encode array 0-2", printed, re.M)
    merge = re.search(r"^(\d+): merge after it", printed, re.M)
    assert encode and merge, printed
    return encode[1], merge[1]


@pytest.mark.parametrize("plan_job", [False, True], ids=["plan-here", "plan-job-and-2-cpu-merge"])
def test_slurm_prepare_matches_a_local_run(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    plan_job: bool,
) -> None:
    monkeypatch.chdir(tmp_path)  # the jobs start here; nothing lands in the checkout
    src, tgt = write_parallel(tmp_path, n=2500)
    local = prepare(CorpusSource(src=src, tgt=tgt), tmp_path / "local", **ARGS, workers=1)

    out = tmp_path / "cluster"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    assert cli(["data", "prepare", "--src", str(src), "--tgt", str(tgt), "--out", str(out), *flags,
                "--slurm", "--ranges", "3", "--time", "10", "--mem", "1G",
                *(["--plan-job", "--cpus-per-task", "2"] if plan_job else [])]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    encode_id, merge_id = job_ids(printed)
    assert not out.exists()  # nothing is written there before the merge job ends
    plan = re.search(r"^(\d+): plan of 3 ranges", printed, re.M)
    assert bool(plan) == plan_job, printed
    if plan:
        slurm_cluster.wait(plan[1], {"COMPLETED"}, timeout=120)

    slurm_cluster.wait(merge_id, {"COMPLETED"}, timeout=240)
    for task in range(3):
        assert slurm_cluster.job(f"{encode_id}_{task}").get("JobState") == "COMPLETED"
    assert tree(out) == tree(tmp_path / "local")  # manifest.json, tokenizer.json and every shard
    assert local["dataset_hash"] in (out / "manifest.json").read_text()
    assert not staged_dir(out).exists()
    logs = sorted(p.name for p in (tmp_path / "cluster.slurm" / "slurm").glob("*.out"))
    jobs = [f"{encode_id}_{t}" for t in range(3)] + [merge_id] + ([plan[1]] if plan else [])
    assert logs == sorted(f"{job}.out" for job in jobs)


def test_a_failed_range_is_rerun_as_printed_and_the_merge_then_matches(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The last range fails (its input is cut short after the plan); the merge is cancelled, not run on a missing
    range; the two `sbatch` lines the command printed then finish the preparation with the local run's bytes."""
    monkeypatch.chdir(tmp_path)
    src, tgt = write_parallel(tmp_path, n=2500)
    prepare(CorpusSource(src=src, tgt=tgt), tmp_path / "local", **ARGS, workers=1)
    full = tgt.read_bytes()
    submit_script = submit.submit_script

    def cut_input_then_submit(script: Path, *sbatch_args: str) -> str:
        if script.name == "encode.sbatch":
            tgt.write_bytes(b"".join(full.splitlines(keepends=True)[:2000]))  # range 2 ends early
        return submit_script(script, *sbatch_args)

    monkeypatch.setattr(submit, "submit_script", cut_input_then_submit)
    out = tmp_path / "cluster"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    assert cli(["data", "prepare", "--src", str(src), "--tgt", str(tgt), "--out", str(out), *flags,
                "--slurm", "--ranges", "3"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    encode_id, merge_id = job_ids(printed)
    slurm_cluster.wait(f"{encode_id}_2", {"FAILED"}, timeout=120)
    slurm_cluster.wait(merge_id, {"CANCELLED"}, timeout=60)
    assert not out.exists()
    log = (tmp_path / "cluster.slurm" / "slurm" / f"{encode_id}_2.out").read_text()
    assert "range 2: expected pairs" in log

    tgt.write_bytes(full)  # the input is whole again: rerun what the command said to
    rerun = re.search(r"`sbatch --array=R (\S+)`, then `sbatch (\S+)`", printed)
    assert rerun, printed
    again = subprocess.run(["sbatch", "--parsable", "--array=2", rerun[1]], capture_output=True, text=True)
    slurm_cluster.wait(f"{again.stdout.strip()}_2", {"COMPLETED"}, timeout=120)
    merge = subprocess.run(["sbatch", "--parsable", rerun[2]], capture_output=True, text=True)
    slurm_cluster.wait(merge.stdout.strip(), {"COMPLETED"}, timeout=120)
    assert tree(out) == tree(tmp_path / "local")
