"""`pipeline data prepare --slurm` on a real local SLURM cluster (fixture in slurm_cluster.py): the array of range
tasks and the merge job write the same shards and manifest, byte for byte, as a local run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.data.corpus import CorpusSource
from pipeline.data.prepare import prepare, staged_dir
from tests.integration.slurm_cluster import LocalSlurm, slurm_cluster_fixture  # noqa: F401  (the fixture)
from tests.unit.data_fixtures import write_parallel

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
ARGS = {"vocab_size": 300, "max_len": 64, "shard_size": 300, "seed": 5}


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_slurm_prepare_matches_a_local_run(
    slurm_cluster: LocalSlurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the jobs start here; nothing lands in the checkout
    src, tgt = write_parallel(tmp_path, n=2500)
    local = prepare(CorpusSource(src=src, tgt=tgt), tmp_path / "local", **ARGS, workers=1)

    out = tmp_path / "cluster"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    assert cli(["data", "prepare", "--src", str(src), "--tgt", str(tgt), "--out", str(out), *flags,
                "--slurm", "--ranges", "3", "--time", "10", "--mem", "1G"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    encode_id = re.search(r"^(\d+): encode array 0-2", printed, re.M)
    merge_id = re.search(r"^(\d+): merge after it", printed, re.M)
    assert encode_id and merge_id, printed
    assert not out.exists()  # nothing is written there before the merge job ends

    slurm_cluster.wait(merge_id[1], {"COMPLETED"}, timeout=240)
    for task in range(3):
        assert slurm_cluster.job(f"{encode_id[1]}_{task}").get("JobState") == "COMPLETED"
    assert tree(out) == tree(tmp_path / "local")  # manifest.json, tokenizer.json and every shard
    assert local["dataset_hash"] in (out / "manifest.json").read_text()
    assert not staged_dir(out).exists()
    logs = sorted(p.name for p in (tmp_path / "cluster.slurm" / "slurm").glob("*.out"))
    assert logs == sorted([f"{encode_id[1]}_{t}.out" for t in range(3)] + [f"{merge_id[1]}.out"])
