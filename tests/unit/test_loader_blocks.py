"""The block-storage before/after (benchmarks/loader_blocks.py): the "before" tree is this checkout with only
`pipeline/data` from the old revision, a child process imports the tree it is given and times the loader, and the
implied pipeline rate adds the loader's time to a step's. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import loader_blocks
from benchmarks.loader_blocks import QUICK, ROOT, before_tree, implied_pipeline, run_child, summarize


def test_the_before_tree_takes_pipeline_data_from_the_revision_and_the_rest_from_this_checkout(
    tmp_path: Path,
) -> None:
    # HEAD, not the historical 4bfeac9: a shallow clone has only its newest commit
    root = before_tree("HEAD", tmp_path / "before")
    committed = subprocess.run(["git", "show", "HEAD:pipeline/data/manifest.py"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout  # fmt: skip
    assert (root / "pipeline/data/manifest.py").read_text() == committed
    for same in ("pipeline/training/compile.py", "pipeline/config/schema.py"):
        assert (root / same).read_text() == (ROOT / same).read_text()


def test_a_child_times_the_loader_of_the_tree_it_is_given(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepared = run_child(ROOT, "prepare", data, QUICK, 0, tmp_path)
    assert prepared["format_version"] == 4 and Path(prepared["pipeline"]) == ROOT / "pipeline"
    timed = run_child(ROOT, "time", data, QUICK, 3, tmp_path)
    assert timed["rows"] == QUICK["rows"] and len(timed["batch_s"]["cpu"]) == 3
    side = summarize([timed])
    assert side["tokens_per_batch"] == QUICK["rows"] * QUICK["seq_len"] and side["mean_batch_s_cpu"] > 0
    # a step of 0.1 s plus the loader's mean batch time, each side
    sides = {"before": side | {"mean_batch_s_cpu": 0.1}, "after": side | {"mean_batch_s_cpu": 0.0}}
    mqar = tmp_path / "run.json"
    mqar.write_text(json.dumps({"suites": {"mqar": {"rows": [
        {"arch": "lstm", "pipeline_step_s": {"median": 0.1}, "tokens_per_batch": 1000}]}}}))  # fmt: skip
    (lstm,) = implied_pipeline(sides, mqar)
    assert (
        lstm["before_tokens_per_s"] == 5000 and lstm["after_tokens_per_s"] == 10000 and lstm["speedup"] == 2
    )


def test_main_refuses_a_before_revision_without_the_old_format(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not older than now's 4"):
        loader_blocks.main(["--quick", "--before", "HEAD", "--batches", "1", "--out", str(tmp_path)])
