"""Non-finite losses stop the run, naming the step, before the optimizer applies them.

A NaN/inf loss used to be back-propagated and stepped: the weights became NaN, the run checkpointed them and
exited 0. `NonFiniteLossCallback` looks at each micro-batch's loss before its backward pass and, at the optimizer
step, either drops that step's gradients (the first `train.max_nonfinite_steps` times: a skipped step still counts
towards `max_steps`, and the lr schedule advances) or raises `NonFiniteLossError`. The optimizer never sees
non-finite gradients from a non-finite loss, and the checkpoint saved at the previous step boundary stays
unmarked (its sidecar is written only at the next step's start or at the end of training), so `--resume auto`
never picks a checkpoint taken just before the loss diverged.

All ranks agree on the verdict with one all-reduce per optimizer step, so they stop (or skip) together rather than
leave a peer waiting in a collective. Skipping drops `param.grad`, which ZeRO's partitioned gradients do not
allow: under DeepSpeed every non-finite loss stops the run (DeepSpeed's fp16 loss scaler skips its own overflows).
Written as a Lightning callback because Lightning's own `detect_anomaly` finds the op that made a NaN (slowly,
for debugging) but neither skips nor names the step.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import torch


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss more often than `train.max_nonfinite_steps` allows; names the step."""


class NonFiniteLossCallback(L.Callback):
    def __init__(self, max_skipped: int, partitioned: bool = False) -> None:
        """max_skipped: `train.max_nonfinite_steps`; partitioned: DeepSpeed (no skipping, see the module doc)."""
        self.max_skipped = 0 if partitioned else max_skipped
        self.skipped: list[int] = []  # steps whose gradients were dropped
        self._losses: list[torch.Tensor] = []  # this optimizer step's micro-batch losses (no host sync yet)

    def on_before_backward(self, trainer: L.Trainer, pl_module: Any, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach().float().reshape(-1)[:1])

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        losses = torch.cat(self._losses) if self._losses else torch.zeros(1, device=pl_module.device)
        self._losses = []
        finite = torch.isfinite(losses)
        flag = (~finite).any().to(torch.int32).reshape(1)  # one host sync per optimizer step, below
        if trainer.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if not flag.item():
            return
        local_bad = losses[~finite]
        value = f"{float(local_bad[0])}" if local_bad.numel() else "on another rank"
        step = trainer.global_step + 1  # the optimizer step being taken, counted from 1 like train.max_steps
        where = f"at optimizer step {step} of {trainer.max_steps} (CSV step {step - 1})"
        if len(self.skipped) < self.max_skipped:
            self.skipped.append(step)
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None  # the optimizer skips parameters without a gradient
            print(
                f"warning: non-finite training loss ({value}) {where}: gradients dropped, step skipped "
                f"({len(self.skipped)} of train.max_nonfinite_steps={self.max_skipped})",
                file=sys.stderr,
                flush=True,
            )
            return
        allowed = (
            f"after {len(self.skipped)} skipped (train.max_nonfinite_steps={self.max_skipped})"
            if self.max_skipped
            else "(train.max_nonfinite_steps=0)"
        )
        raise NonFiniteLossError(
            f"non-finite training loss ({value}) {where} {allowed}; stopped before the optimizer "
            "applied it, no checkpoint saved at this step. Lower optim.lr, set optim.grad_clip, use "
            "32-true precision, or allow skips with train.max_nonfinite_steps=N"
        )
