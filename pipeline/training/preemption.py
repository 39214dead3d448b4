"""Preemption: SIGUSR1 / SIGTERM make the run checkpoint at the next step boundary and stop cleanly.

On a cluster a job is told to stop before it is killed: SLURM sends the signal asked for with
`#SBATCH --signal=USR1@<seconds>` before the time limit, and SIGTERM on preemption or `scancel` (then SIGKILL after
`KillWait`). The handler only sets a flag; at the end of the current optimizer step every rank agrees on the flag
(one tiny all-reduce per step, so all ranks stop at the same step), `last.ckpt` is written with its metadata, and
training stops. `pipeline train` then exits with status 75 after SIGUSR1 (EX_TEMPFAIL: "checkpointed, run me
again with --resume auto"), which the sbatch templates in `slurm/` answer with `scontrol requeue` once every task
has exited, so the job goes back to the queue and its next start resumes from that checkpoint. After SIGTERM it
exits with 143 (128 + SIGTERM) and is not requeued by the script: a user's `scancel` must stop the job, and SLURM
requeues preempted jobs itself when the partition says so. The trainer itself never calls SLURM.

Written by hand because Lightning's SLURM handler saves inside the signal handler (mid-step, rank 0 only, no
metadata) and its SIGTERM handling tears the run down without a checkpoint.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import lightning as L
import torch

PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionCallback(L.Callback):
    def __init__(self, checkpointer: Any) -> None:
        """checkpointer: the run's `VerifiedModelCheckpoint`, asked to `save_now` at the agreed step boundary."""
        self.checkpointer = checkpointer
        self.received: int = 0
        self.stopped_by: str | None = None  # signal name once the run checkpointed and stopped for it
        self._previous: dict[int, Any] = {}
        self._last_step = -1

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        print(
            f"received {signal.Signals(signum).name}: checkpointing at the next step boundary",
            file=sys.stderr,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed here, after Lightning registered its own handlers, and restored at the end of training.
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
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
        path = self.checkpointer.save_now(trainer)
        self.stopped_by = signal.Signals(flag).name
        if trainer.is_global_zero:
            print(f"{self.stopped_by}: saved {path} at step {trainer.global_step}; stopping", file=sys.stderr)
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def exit_code(signal_name: str | None) -> int:
    """Status of `pipeline train`: 0 when it finished, 75 after SIGUSR1 (requeue me), 143 after SIGTERM."""
    return {None: 0, "SIGUSR1": PREEMPTED_EXIT_CODE, "SIGTERM": 128 + signal.SIGTERM}[signal_name]
