"""Callback: how far back the training signal reaches, measured during training (issue 9's vanishing-gradient view).

Every `train.grad_reach_every` optimizer steps, rank 0 measures ||dL/dx_t|| at every source and target position of
the current batch for the loss of each row's last target token (`grad_by_time.grad_norm_by_position`), appends the
two vectors to `<run_dir>/grad_by_position.jsonl`, and logs one scalar per side: the norm at the first position over
the norm at the last (`grad_reach/tgt_first_over_last`): ~1 means the signal reaches the start, ~0 means it
vanishes. `python -m pipeline.grad_by_time --plot` draws the same picture for fresh models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L

from pipeline.grad_by_time import first_over_last, grad_norm_by_position


class GradReachCallback(L.Callback):
    def __init__(self, every: int, run_dir: Path) -> None:
        self.every = every
        self.path = run_dir / "grad_by_position.jsonl"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == 0 or step % self.every != 0:
            return
        if getattr(trainer.strategy, "zero_stage_3", False):
            return  # partitioned parameters: a rank-0-only backward would need every rank
        norms = grad_norm_by_position(pl_module.model, batch, loss_at="last")
        record = {"step": step, **{side: [float(x) for x in vec] for side, vec in norms.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        metrics = {}
        for side in ("src", "tgt"):
            ratio = first_over_last(record[side])
            if math.isfinite(ratio):
                metrics[f"grad_reach/{side}_first_over_last"] = ratio
        pl_module.log_dict(metrics, rank_zero_only=True)
