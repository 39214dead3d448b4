"""Several runs in one process (the demo, a local sweep) are separate W&B runs; a resumed run continues its own.

Read back from the offline `.wandb` files: before the fix, the second run had no `wandb/` directory and its
metrics, config and final summary landed in the first run's file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.training.wandb_files import offline_run_files, read_offline_run
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


def _fit(arch: str, data: Path, run_dir: Path, *extra: str) -> dict:
    from pipeline.training.trainer import fit

    cfg = tiny_config(
        arch, data, run_dir, "logging.wandb=true", "logging.group=sweep-x", "train.bleu_samples=0", *extra
    )
    return fit(cfg)


def test_each_run_is_its_own_wandb_run_and_a_resume_continues_it(tiny_data: Path, tmp_path: Path) -> None:
    runs = {arch: tmp_path / arch for arch in ("lstm", "transformer")}
    summaries = {arch: _fit(arch, tiny_data, run_dir) for arch, run_dir in runs.items()}
    seen_ids = set()
    for arch, run_dir in runs.items():
        files = offline_run_files(run_dir)
        assert len(files) == 1, f"{arch}: expected its own offline run, found {files}"
        run = read_offline_run(files[0])
        run_id = (run_dir / "wandb_id").read_text().strip()
        assert run.run_ids == [run_id]
        seen_ids.add(run_id)
        assert run.names == [f"tiny-{arch}"]
        assert run.groups == ["sweep-x"]
        assert run.config_updates == 1, "the run config is logged once"
        assert run.config["config"]["model"]["arch"] == arch
        assert run.steps == sorted(run.steps) and max(run.steps) == summaries[arch]["steps"] - 1
        assert run.summary["valid/loss"] == pytest.approx(summaries[arch]["valid_loss"], rel=1e-6)
        assert run.exit_records == 1, "the W&B run is finished when its fit ends"
    assert len(seen_ids) == 2

    # Resume the LSTM for 3 more steps: a new offline file, the same W&B run id, steps continue.
    _fit("lstm", tiny_data, runs["lstm"], "train.max_steps=9")
    files = offline_run_files(runs["lstm"])
    assert len(files) == 2
    resumed = read_offline_run(files[1])
    assert resumed.run_ids == [(runs["lstm"] / "wandb_id").read_text().strip()]
    assert min(resumed.steps) >= summaries["lstm"]["steps"] - 1 and max(resumed.steps) == 8
    assert json.loads((runs["lstm"] / "summary.json").read_text())["steps"] == 9
