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
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig

SERVICE_ENV = "WANDB_SERVICE"  # wandb.env.SERVICE; named here so this module imports without wandb


def wandb_run_id(run_dir: Path) -> str:
    """Read, or create once, the run's W&B id (`run_dir/wandb_id`)."""
    path = run_dir / "wandb_id"
    if path.exists():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]  # W&B's own id format: 8 lowercase alphanumerics
    run_dir.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        from pipeline.scaling.records.json_file import write_text_atomic

        write_text_atomic(path, run_id)
    return run_id


def make_wandb_logger(cfg: RunConfig, run_dir: Path) -> Any:
    from lightning.pytorch.loggers import WandbLogger

    os.environ["WANDB_MODE"] = cfg.logging.wandb_mode
    drop_borrowed_wandb_service(os.environ, os.getpid())
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
    # Lightning passes `anonymous=None` to wandb.init, and wandb warns about any value of that deprecated setting
    # ("The anonymous setting has no effect"), one line in every run's output: leave it unset.
    logger._wandb_init.pop("anonymous", None)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        logger.experiment  # noqa: B018 - the property starts the run: a W&B failure stops the job here, not mid-fit
    return logger


def drop_borrowed_wandb_service(environ: MutableMapping[str, str], pid: int) -> None:
    """Forget a W&B service token (`WANDB_SERVICE`) inherited from another process, so this one starts its own.

    wandb saves the token of the `wandb-core` service a process starts into that process's environment, and every
    child (a subprocess, an `sbatch` job: SLURM exports the environment) then connects to that service instead of
    starting one. A training job must not: its W&B run then lives in a service that outlives the job, so after a
    SIGKILL and requeue the service still holds the run's stream and refuses the resumed attempt ("run ID ... is in
    use") for as long as the launching process lives; on a cluster the token names a socket on the login node.
    The token is `<version>-<pid of the service's owner>-...`; a token this process wrote itself is kept (the runs
    of a local sweep share one service, each finished by `finish_wandb`).
    """
    token = environ.get(SERVICE_ENV, "")
    parts = token.split("-")
    if token and (len(parts) < 2 or parts[1] != str(pid)):
        del environ[SERVICE_ENV]


def finish_wandb(loggers: list[Any]) -> None:
    """End the W&B run of every WandbLogger that started one (the next run in this process starts its own)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
            logger._experiment = None
