"""A progress bar in optimizer steps, the unit every run is sized in (`train.max_steps`).

Lightning's bar counts batches of the current epoch and titles itself "Epoch {e}/{max_epochs - 1}"; a run sized in
steps has max_epochs = -1, so it read "Epoch 0/-2", and with a streaming loader the epoch length is unknown.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self.trainer.max_steps > 0 else float("inf")

    def _get_train_description(self, current_epoch: int) -> str:
        return f"train steps (data epoch {current_epoch})"

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.train_progress_bar_id is not None and self.progress is not None:
            self._update(self.train_progress_bar_id, trainer.global_step)
