"""W&B logger that survives restarts and keeps runs apart.

The run id lives in the run directory, so a resumed or requeued job keeps appending to the same W&B run
(`resume="allow"`), offline (the default: no account, no network) or online. Several runs in one process (the demo,
a local sweep) each get their own W&B run: `finish_wandb` ends a run's W&B run when its fit ends, otherwise the next
`WandbLogger` finds the old run still active and reuses it (Lightning warns "There is a wandb run already in
progress ... will reuse this run" and every later run's metrics land in the first run). The run config reaches W&B
once, through Lightning's `log_hyperparams` (the module's saved hyper-parameters).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig


def wandb_run_id(run_dir: Path) -> str:
    """Read, or create once, the run's W&B id (`run_dir/wandb_id`)."""
    path = run_dir / "wandb_id"
    if path.exists():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]  # W&B's own id format: 8 lowercase alphanumerics
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(run_id)
        tmp.replace(path)
    return run_id


def make_wandb_logger(cfg: RunConfig, run_dir: Path) -> Any:
    from lightning.pytorch.loggers import WandbLogger

    os.environ["WANDB_MODE"] = cfg.logging.wandb_mode
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(
        project=cfg.logging.project,
        entity=cfg.logging.entity,
        name=cfg.name,
        id=wandb_run_id(run_dir),
        resume="allow",
        group=cfg.logging.group,
        save_dir=str(run_dir),
        offline=cfg.logging.wandb_mode == "offline",
        config={"slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0"))},
    )
    start_with_retry(logger)
    return logger


RUN_IN_USE_WAIT_S = 180.0  # was 60 s; the full suite still saw the id held past 180 s (open)


def start_with_retry(logger: Any, wait_s: float = RUN_IN_USE_WAIT_S) -> None:
    """Start the W&B run now (rank 0), waiting while a killed earlier attempt still holds it.

    A requeued job whose previous attempt was SIGKILLed can start before that attempt's `wandb-core` service has
    noticed and exited; meanwhile W&B refuses the id ("run ID ... is in use") and the resumed run would die at its
    first log call. The service exits soon after its parent, which itself may first wait out its SIGTERM grace
    period in a collective with a dead peer, so the start is retried for up to `wait_s`, saying so."""
    import time

    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    deadline, first_wait = time.monotonic() + wait_s, True
    while True:
        try:
            logger.experiment  # noqa: B018 - the property starts the run
            return
        except Exception as err:
            if "in use" not in str(err) or time.monotonic() > deadline:
                raise
            if first_wait:
                print(f"W&B: run id still held by a stopped earlier attempt; retrying for up to {wait_s:.0f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
                first_wait = False
            logger._experiment = None
            time.sleep(2.0)


def finish_wandb(loggers: list[Any]) -> None:
    """End the W&B run of every WandbLogger that started one (the next run in this process starts its own)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
            logger._experiment = None
