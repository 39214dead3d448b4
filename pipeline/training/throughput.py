"""Throughput callback: tokens/s, achieved TFLOP/s, MFU and data-wait share, logged every `log_every` steps.

Why not Lightning's `ThroughputMonitor`: it needs a fixed FLOPs-per-batch, but our batches vary in source and target
length and the recurrent models' cost depends on both, so FLOPs are computed per batch from the model's own
`flops_per_token(src_len, tgt_len)`. Everything here is host-side arithmetic on Python ints from the loader: no
device synchronisation is added to the step.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Theoretical peak FLOP/s of one device for MFU, or None where unknown (CPU)."""
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
    return get_available_flops(device, dtype)


class ThroughputCallback(L.Callback):
    def __init__(self, log_every: int = 10) -> None:
        self.log_every = log_every
        self._reset(time.perf_counter())
        self._batch_start = 0.0
        self._last_end: float | None = None
        self.peak: float | None = None
        self.total_tokens = (
            0  # target tokens trained on by this rank, kept across restarts (saved in checkpoints)
        )
        self.last_metrics: dict[str, float] = {}

    def _reset(self, now: float) -> None:
        self._window_start = now
        self._tokens = 0
        self._flops = 0.0
        self._wait = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.peak = peak_flops(pl_module.device, str(trainer.precision))
        self._reset(time.perf_counter())
        self._last_end = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: dict, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end  # time spent fetching this batch from the loader
        self._batch_start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        n_tgt = int(batch["n_tokens"])
        n_src = int(batch.get("n_src_tokens", n_tgt))
        rows = max(1, int(batch["src"].shape[0]))
        fpt = pl_module.model.flops_per_token(max(1, round(n_src / rows)), max(1, round(n_tgt / rows)))
        self._tokens += n_tgt
        self.total_tokens += n_tgt
        self._flops += fpt * n_tgt
        self._last_end = time.perf_counter()
        if trainer.global_step % self.log_every == 0 and trainer.global_step > 0:
            elapsed = max(1e-9, self._last_end - self._window_start)
            world = trainer.world_size
            metrics = {
                # rank 0's rate times the world size: an estimate that adds no collective to the step
                "throughput/tokens_per_s": self._tokens * world / elapsed,
                "throughput/tflops_per_device": self._flops / elapsed / 1e12,
                "throughput/data_wait_pct": 100.0 * self._wait / elapsed,
            }
            if self.peak:
                metrics["throughput/mfu"] = self._flops / elapsed / self.peak
            pl_module.log_dict(metrics, rank_zero_only=True)
            self.last_metrics = metrics
            self._reset(self._last_end)

    def state_dict(self) -> dict[str, Any]:
        return {"total_tokens": self.total_tokens}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total_tokens = int(state_dict.get("total_tokens", 0))
