"""The end of a run: its summary and record written once, and a finished run that is started again left as it was.

Re-running a finished run (a requeue, or "did it finish? run it again") resumes from its final checkpoint, where
Lightning trains and validates nothing (a run stopped by `train.stop_at_accuracy` stops again at once). Its `summary.json` and `result.json` are kept ("already finished at step
N; summary kept"); only a run that died between its last step and its summary is validated again (the trainer).
"""

from __future__ import annotations

import sys
from typing import Any

from pipeline.config import RunConfig
from pipeline.scaling.records.run_dir import RESULT_FILE, read_summary, write_summary


def is_finished(summary: dict[str, Any], max_steps: int) -> bool:
    """A run is finished at `train.max_steps`, or earlier where `train.stop_at_accuracy` stopped it (the summary's
    `early_stop` names the step)."""
    stopped = summary.get("early_stop") or {}
    return summary["steps"] >= max_steps or (bool(stopped) and stopped.get("step") == summary["steps"])


def finished_summary(cfg: RunConfig, step: int) -> dict[str, Any] | None:
    """The run's written summary when it is the final one of a run finished at `step` (>= `train.max_steps`, or
    the step an early stop names), else None (the run must be validated again)."""
    try:
        kept = read_summary(cfg.resolved_run_dir)
    except ValueError:
        return None  # damaged: validated again and rewritten
    if not kept or kept.get("steps") != step or kept.get("valid_loss") is None:
        return None
    return kept if is_finished(kept, cfg.train.max_steps) else None


def end_of_run(
    cfg: RunConfig, summary: dict[str, Any], rank: int, clock: Any, kept: bool = False
) -> dict[str, Any]:
    """Write (rank 0) the summary, unless `kept`, and the record of a finished run (`is_finished`); returns the
    summary with this process' `rank`."""
    run_dir = cfg.resolved_run_dir
    if rank == 0:
        if kept:
            print(f"{run_dir}: already finished at step {summary['steps']}; summary kept", file=sys.stderr)
        else:
            write_summary(run_dir, summary)
        if is_finished(summary, cfg.train.max_steps) and not (kept and (run_dir / RESULT_FILE).is_file()):
            from pipeline.training.run_result import write_result

            write_result(cfg, summary, clock.elapsed)
    return {**summary, "rank": rank}
