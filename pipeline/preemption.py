"""Preemption: SIGUSR1 / SIGTERM make the run checkpoint at the next step boundary and stop cleanly.

On a cluster a job is told to stop before it is killed: SLURM sends the signal asked for with
`#SBATCH --signal=USR1@<seconds>` before the time limit, and SIGTERM on preemption or `scancel` (then SIGKILL after
`KillWait`). The handler only sets a flag; at the end of the current optimizer step every rank agrees on the flag
(one tiny all-reduce per step, so all ranks stop at the same step), `last.ckpt` is written with its metadata, and
training stops. `pipeline train` then exits with status 75 (EX_TEMPFAIL: "checkpointed, run again with
--resume auto"). On SIGUSR1 inside a SLURM job, rank 0 also runs `scontrol requeue $SLURM_JOB_ID`, so the job goes
back to the queue and its next start resumes from that checkpoint. SIGTERM does not requeue (a user's `scancel`
must stop the job; SLURM requeues preempted jobs itself when the partition says so).

Written by hand because Lightning's SLURM handler saves inside the signal handler (mid-step, rank 0 only, no
metadata) and its SIGTERM handling tears the run down without a checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import lightning as L
import torch

PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionCallback(L.Callback):
    def __init__(self) -> None:
        self.received: int = 0
        self.stopped_by: str | None = None  # signal name once the run checkpointed and stopped for it
        self._previous: dict[int, Any] = {}
        self._last_step = -1

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        print(f"received {signal.Signals(signum).name}: checkpointing at the next step boundary", file=sys.stderr)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed here, after Lightning registered its own handlers, and restored at the end of training.
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self._last_step:
            return  # inside a gradient-accumulation window: not a step boundary
        self._last_step = trainer.global_step
        flag = self.received
        if trainer.world_size > 1:
            import torch.distributed as dist

            agreed = torch.tensor([flag], device=pl_module.device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            flag = int(agreed.item())
        if not flag:
            return
        from pipeline.checkpointing import VerifiedModelCheckpoint

        saver = next(cb for cb in trainer.callbacks if isinstance(cb, VerifiedModelCheckpoint))
        path = saver.save_now(trainer)
        self.stopped_by = signal.Signals(flag).name
        if trainer.is_global_zero:
            print(f"{self.stopped_by}: saved {path} at step {trainer.global_step}; stopping", file=sys.stderr)
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def requeue_if_slurm(signal_name: str | None, is_rank_zero: bool) -> bool:
    """After a SIGUSR1 stop inside a SLURM job, put the job back in the queue (rank 0 only). True if requeued."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = (
        f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
    )
    if signal_name != "SIGUSR1" or not job_id or not is_rank_zero:
        return False
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"scontrol requeue {job_id} failed: {result.stderr.strip()}", file=sys.stderr)
        return False
    print(f"requeued SLURM job {job_id}", file=sys.stderr)
    return True
