"""Several runs in one process (the demo, a local sweep) are separate W&B runs; a resumed run continues its own.

Read back from the offline `.wandb` files: before the fix, the second run had no `wandb/` directory and its
metrics, config and final summary landed in the first run's file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.training.wandb_files import OfflineRun, offline_run_files, read_offline_run
from pipeline.training.wandb_logger import SERVICE_ENV, drop_borrowed_wandb_service
from tests.conftest import ROOT, TINY, tiny_config, tiny_overrides

pytestmark = pytest.mark.slow


def _fit(arch: str, data: Path, run_dir: Path, *extra: str) -> dict:
    from pipeline.training.trainer import fit

    cfg = tiny_config(
        arch, data, run_dir, "logging.wandb=true", "logging.group=sweep-x", "train.bleu_samples=0", *extra
    )
    return fit(cfg)


def _read_when_finished(path: Path, timeout_s: float = 60.0) -> OfflineRun:
    """The offline run once its exit record is on disk: wandb-core writes the `.wandb` file from its own process,
    and under load the last blocks can land after `finish()` returns (one suite run read a resumed file with no
    records yet). A file that never gets its exit record is read as it is, and the assertions fail on it."""
    deadline = time.monotonic() + timeout_s
    run = read_offline_run(path)
    while run.exit_records == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        run = read_offline_run(path)
    return run


def test_each_run_is_its_own_wandb_run_and_a_resume_continues_it(tiny_data: Path, tmp_path: Path) -> None:
    runs = {arch: tmp_path / arch for arch in ("lstm", "transformer")}
    summaries = {arch: _fit(arch, tiny_data, run_dir) for arch, run_dir in runs.items()}
    seen_ids = set()
    for arch, run_dir in runs.items():
        files = offline_run_files(run_dir)
        assert len(files) == 1, f"{arch}: expected its own offline run, found {files}"
        run = _read_when_finished(files[0])
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
    resumed = _read_when_finished(files[1])
    assert resumed.exit_records == 1
    assert resumed.run_ids == [(runs["lstm"] / "wandb_id").read_text().strip()]
    assert min(resumed.steps) >= summaries["lstm"]["steps"] - 1 and max(resumed.steps) == 8
    assert json.loads((runs["lstm"] / "summary.json").read_text())["steps"] == 9


def test_a_job_starts_its_own_wandb_service_instead_of_its_launchers(tiny_data: Path, tmp_path: Path) -> None:
    """A launcher that used W&B (pytest here, a notebook, a sweep) leaves `WANDB_SERVICE` in the environment that
    sbatch and subprocesses inherit. The job must not join that service: it outlives the job and kept a SIGKILLed
    attempt's run id "in use" after the requeue. Here the inherited token names a socket that does not exist, so
    a job that used it could not start W&B at all."""
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        SERVICE_ENV: f"3-{os.getpid()}-unix-{tmp_path}/no-such-socket",
    }
    cmd = [sys.executable, "-m", "pipeline", "train", *[x for p in TINY for x in ("--config", str(p))],
           "--config", str(ROOT / "configs/tiny/lstm.yaml"),
           *tiny_overrides(tiny_data, run_dir, "logging.wandb=true", "train.max_steps=2", "train.bleu_samples=0")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [offline] = offline_run_files(run_dir)
    assert read_offline_run(offline).run_ids == [(run_dir / "wandb_id").read_text().strip()]


def test_only_a_service_token_of_another_process_is_dropped() -> None:
    own, other = f"3-{os.getpid()}-unix-/tmp/a", f"3-{os.getpid() + 1}-tcp-localhost-4242"
    for token, kept in ((own, True), (other, False), ("garbled", False)):
        environ = {SERVICE_ENV: token, "OTHER": "x"}
        drop_borrowed_wandb_service(environ, os.getpid())
        assert (SERVICE_ENV in environ) == kept and environ["OTHER"] == "x", token
    environ = {}
    drop_borrowed_wandb_service(environ, os.getpid())
    assert environ == {}
