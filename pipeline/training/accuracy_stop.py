"""`train.stop_at_accuracy`: a memory-task run stops at the first validation whose answer accuracy reaches a value.

Why: Zoology ends an MQAR run once validation accuracy reaches 0.99. A run that has learned the task spends no
more steps on it, and a study's grid of (architecture, width, N, learning rate) cells finishes in the time its
hard cells take. The stop is a finished run: it writes its summary and its record (`early_stop` says at which
step, at what accuracy, against which value), and a sweep counts it done.

The accuracy is the module's last `answer_metrics["accuracy"]` (answers right / answers scored, summed over every
rank before it is read), so every rank takes the same decision at the same step without another collective. At
the stop the callback saves `last.ckpt` (with its own state, which says it stopped): a run started again from that
checkpoint stops at once, trains nothing, and keeps its summary and record (`finished_run.py`), unless the value
was raised above the accuracy reached (or unset), in which case it trains on.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn


class StopAtAccuracy(L.Callback):
    """Set `trainer.should_stop` at a training-time validation whose answer accuracy is >= `threshold`.

    Every memory-task run has one, `threshold` None when the key is unset (it then only keeps its state), so that
    a checkpoint's callback state always has its callback, whether or not the key is set when the run resumes."""

    def __init__(self, threshold: float | None, checkpointer: Any) -> None:
        """checkpointer: the run's `VerifiedModelCheckpoint`, asked to `save_now` at the stop."""
        self.threshold = threshold
        self.checkpointer = checkpointer
        self.stopped: dict[str, Any] | None = None  # the record's `early_stop`, once the run stopped

    def state_dict(self) -> dict[str, Any]:
        return {"stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped = state_dict.get("stopped")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resumed from the checkpoint of the stop: stop again (nothing trains) while the accuracy still counts."""
        s = self.stopped
        if s is None:
            return
        still = self.threshold is not None and float(s["value"]) >= self.threshold
        if s.get("step") == trainer.global_step and still:
            self.stopped = {**s, "threshold": self.threshold}
            trainer.should_stop = True
        else:  # resumed from an earlier checkpoint, or the value was raised past it: the run trains on
            self.stopped = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.threshold is None or self.stopped is not None:
            return
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        accuracy = (getattr(pl_module, "answer_metrics", None) or {}).get("accuracy")
        if accuracy is None or accuracy < self.threshold:
            return
        step, max_steps = trainer.global_step, int(trainer.max_steps)
        self.stopped = {
            "step": step,
            "max_steps": max_steps,
            "metric": "accuracy",
            "value": float(accuracy),
            "threshold": self.threshold,
            "reason": f"validation answer accuracy {accuracy:.4f} >= train.stop_at_accuracy={self.threshold:g} "
            f"at step {step} of {max_steps}",
        }
        trainer.should_stop = True
        self.checkpointer.save_now(trainer)  # a collective under DeepSpeed: every rank is here at this step
        if trainer.is_global_zero:
            print(f"stopping early: {self.stopped['reason']}", file=sys.stderr, flush=True)
