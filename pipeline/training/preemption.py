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

A bounded stop, so a preempted run never hangs. The flag is read only at a step boundary, and a run whose
loader waits for data (an empty or stalled stream, a blocked worker, a hung file system) never reaches one. So
the signal also starts a watchdog thread: if no step boundary comes within `stop_timeout_s()` seconds
(`$PIPELINE_STOP_TIMEOUT`, default 20, below SLURM's default KillWait of 30 s), it saves what is safe without
the training thread (the loggers, and the sidecars of checkpoints already written whole at an earlier
boundary; nothing mid-step), kills the local DDP children, and ends the process with the signal's status (143
for SIGTERM, 75 for SIGUSR1) via `os._exit`, the one exit a thread can force while the main thread is stuck.

Written by hand because Lightning's SLURM handler saves inside the signal handler (mid-step, rank 0 only, no
metadata) and its SIGTERM handling tears the run down without a checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import lightning as L
import torch

PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
STOP_TIMEOUT_ENV = "PIPELINE_STOP_TIMEOUT"
DEFAULT_STOP_TIMEOUT_S = 20.0


def stop_timeout_s() -> float:
    """Seconds from a stop signal to a forced exit when no step boundary comes (`$PIPELINE_STOP_TIMEOUT`)."""
    raw = os.environ.get(STOP_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_STOP_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        print(f"warning: ${STOP_TIMEOUT_ENV}={raw!r} is not a positive number of seconds; using "
              f"{DEFAULT_STOP_TIMEOUT_S:g}", file=sys.stderr)  # fmt: skip
        value = DEFAULT_STOP_TIMEOUT_S
    return value


class PreemptionCallback(L.Callback):
    def __init__(self, checkpointer: Any) -> None:
        """checkpointer: the run's `VerifiedModelCheckpoint`, asked to `save_now` at the agreed step boundary."""
        self.checkpointer = checkpointer
        self.received: int = 0
        self.stopped_by: str | None = None  # signal name once the run checkpointed and stopped for it
        self._previous: dict[int, Any] = {}
        self._last_step = -1
        self._trainer: L.Trainer | None = None
        self._watchdog: threading.Timer | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        timeout = stop_timeout_s()
        print(
            f"received {signal.Signals(signum).name}: checkpointing at the next step boundary "
            f"(or exiting in {timeout:g} s if none comes, ${STOP_TIMEOUT_ENV})",
            file=sys.stderr,
            flush=True,
        )
        if self._watchdog is None:
            self._watchdog = threading.Timer(timeout, self._force_exit, args=(signum, timeout))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _force_exit(self, signum: int, timeout: float) -> None:
        """No step boundary within `timeout` s of the signal: save what is safe, then end the process."""
        name = signal.Signals(signum).name
        trainer = self._trainer
        saved = ""
        try:
            mark_complete = getattr(self.checkpointer, "_mark_complete", None)
            pending = [str(p) for p, *_ in getattr(self.checkpointer, "_unverified", [])]
            if trainer is not None and mark_complete is not None:
                mark_complete(trainer)  # flushes the loggers, then writes the sidecars of whole checkpoints
                saved = f"; completed {', '.join(pending)}" if pending else ""
            launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
            if launcher is not None and hasattr(launcher, "kill"):
                launcher.kill(signal.SIGKILL)  # local DDP children: they would wait for this rank forever
        except Exception as err:  # noqa: BLE001 - the exit below must happen whatever failed here
            saved = f"; saving failed: {err!r}"
        print(
            f"{name}: no step boundary within {timeout:g} s (the data loader or a step is stuck); exiting with "
            f"{exit_code(name)} without a new checkpoint{saved}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(exit_code(name))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed here, after Lightning registered its own handlers, and restored at the end of training.
        self._trainer = trainer
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
        self._cancel_watchdog()  # a step boundary: the save below is bounded by the disk, not by the loader
        path = self.checkpointer.save_now(trainer)
        self.stopped_by = signal.Signals(flag).name
        if trainer.is_global_zero:
            print(f"{self.stopped_by}: saved {path} at step {trainer.global_step}; stopping", file=sys.stderr)
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()  # a failed fit (e.g. a non-finite loss) must not leave this run's handlers installed

    def _restore(self) -> None:
        self._cancel_watchdog()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self._trainer = None


def exit_code(signal_name: str | None) -> int:
    """Status of `pipeline train`: 0 when it finished, 75 after SIGUSR1 (requeue me), 143 after SIGTERM."""
    return {None: 0, "SIGUSR1": PREEMPTED_EXIT_CODE, "SIGTERM": 128 + signal.SIGTERM}[signal_name]
