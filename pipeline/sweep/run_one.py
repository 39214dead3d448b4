"""One sweep run: train (or resume) it; the trainer writes its record (`SWEEP_DIR/<run>/result.json`,
pipeline/training/run_result.py) as it does for `pipeline train`. Imported only when a run trains, so
`pipeline sweep --help` and `--dry-run` never import Lightning.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pipeline.training.trainer
from pipeline.config import RunConfig, load_config
from pipeline.scaling.records.run_dir import RESULT_FILE
from pipeline.scaling.records.run_record import RunRecord, load_record
from pipeline.training.finished_run import is_finished
from pipeline.training.process_exit import TrainProcess


class RunInterrupted(Exception):
    """A run stopped on a signal after saving its checkpoint: not a failure, and not a reason to start the next run."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


def train_run(configs: list[str], overrides: list[str], delete_checkpoints: bool = False,
              progress: Any = None, *, cfg: RunConfig | None = None,
              process: TrainProcess | None = None) -> RunRecord | None:  # fmt: skip
    """Train (or resume) one run and write its result.json; returns the record (None on ranks other than 0).

    `cfg`: the run's config already loaded from `configs` + `overrides` (not loaded again); `process`: see `fit`."""
    cfg = cfg or load_config(configs, overrides)
    run_dir = cfg.resolved_run_dir
    summary = pipeline.training.trainer.fit(
        cfg, resume=_resume_mode(run_dir), process=process, progress=progress
    )
    if summary.get("rank", 0) != 0:
        return None
    if summary.get("preempted"):  # checkpointed on SIGTERM/SIGUSR1: the sweep must stop too, not go on
        raise RunInterrupted(
            summary["preempted"],
            f"{run_dir}: {summary['preempted']} at step {summary['steps']}; checkpointed",
        )
    if not is_finished(summary, cfg.train.max_steps):
        raise RuntimeError(f"{run_dir}: stopped at step {summary['steps']} of {cfg.train.max_steps}")
    record = load_record(run_dir / RESULT_FILE)  # written by the trainer at the run's end
    if delete_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return record


def _resume_mode(run_dir: Path) -> str:
    """`auto`, or `fresh` for a run directory that holds an earlier attempt's files but no `checkpoints/`.

    That happens when a sweep directory is committed or copied mid-run (checkpoints are not: they are large and
    gitignored). `pipeline train` refuses such a directory, so as not to restart a user's run silently; a sweep run
    has nothing to resume from and a plan to finish, so it starts again at step 0, and `--resume fresh` keeps the
    old files in `<run>/previous-<time>/`."""
    from pipeline.training.checkpoint_files import checkpoint_dir, previous_state

    stale = previous_state(run_dir)
    if not stale or checkpoint_dir(run_dir).is_dir():
        return "auto"
    print(f"{run_dir}: an earlier attempt's files ({', '.join(stale)}) but no checkpoints/ to resume from: "
          "starting it again at step 0, the old files moved to previous-<time>/", file=sys.stderr, flush=True)  # fmt: skip
    return "fresh"
