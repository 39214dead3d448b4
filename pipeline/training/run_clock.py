"""Training wall time summed over every attempt of a run, for the run's record (`result.json`'s `wall_time_s`).

Kept in checkpoints, so it survives a resume; time lost after the last checkpoint of a killed attempt is not
counted. It also drives the sweep's per-run progress bar when one is given.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class RunClock(L.Callback):
    def __init__(self, progress: Any = None) -> None:
        self.before = 0.0  # seconds trained by earlier attempts, restored from the checkpoint
        self.start: float | None = None
        self.progress = progress  # (rich Progress, task id) or None

    @property
    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()
        self._show(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._show(trainer)

    def _show(self, trainer: L.Trainer) -> None:
        if self.progress is not None:
            bar, task = self.progress
            loss = trainer.callback_metrics.get("valid/loss")
            note = f"valid {float(loss):.3f}" if loss is not None else ""
            bar.update(task, completed=trainer.global_step, total=trainer.max_steps, note=note)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before = float(state.get("elapsed", 0.0))
        self.start = None
