"""Throughput callback: tokens/s, achieved TFLOP/s, MFU, data-wait share and the step-time split.

Logged every `log_every` steps, and summed over the run for its result record (`run_timing`). FLOPs are computed per
batch from the model's own `flops_per_token(src_len, tgt_len)`, since batches vary in source and target length and
the recurrent models' cost depends on both. Why not Lightning's `ThroughputMonitor`: it synchronises the device at
every batch (`torch.cuda.synchronize`), and has no data-wait share, no forward/backward/optimizer split and no token
count that survives a resume. Here the throughput is host-side arithmetic on Python ints from the loader; the split
into forward, backward and optimizer time is measured on every `log_every`-th batch only, where (on a GPU) the device
is synchronised at each boundary so that the times belong to the phase that ran.
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


def batch_lengths(batch: dict[str, Any]) -> tuple[int, int]:
    """(mean source length, mean target length) of one batch for `flops_per_token`: real tokens per row.

    A language-model batch has no source (`src` is [B, 0]): its source length is 0, which a decoder-only model's
    `flops_per_token(0, T)` requires. Otherwise each length is at least 1 (an all-padding side never occurs)."""
    rows = max(1, int(batch["tgt_out"].shape[0]))
    n_tgt = int(batch["n_tokens"])
    tgt_len = max(1, round(n_tgt / rows))
    if batch["src"].dim() == 2 and batch["src"].shape[1] == 0:
        return 0, tgt_len
    return max(1, round(int(batch.get("n_src_tokens", n_tgt)) / rows)), tgt_len


def batch_flops_per_token(model: Any, batch: dict[str, Any]) -> float:
    """`flops_per_token` at the batch's lengths, with the output projection counted where it runs: at every
    target, or for a memory-task batch at its `n_answers` of `n_tokens` positions only (docs/flops.md)."""
    fpt = float(model.flops_per_token(*batch_lengths(batch)))
    answers = batch.get("n_answers")
    if answers is not None:
        fpt -= model.output_flops_per_token() * (1.0 - int(answers) / max(1, int(batch["n_tokens"])))
    return fpt


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
        # run totals for the record: seconds of each phase over the sampled batches, and the counts
        self.split_s = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        self.split_batches = 0
        self.train_s = 0.0  # wall time of every batch (data wait included) since this start
        self.wait_s = 0.0
        self.batches = 0
        self.flops = 0.0
        self._marks: dict[str, float] = {}
        self._sampled = False
        self._tokens_at_start = 0

    @property
    def _tokens_this_start(self) -> int:
        return self.total_tokens - self._tokens_at_start

    def _reset(self, now: float) -> None:
        self._window_start = now
        self._tokens = 0
        self._flops = 0.0
        self._wait = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tokens_at_start = self.total_tokens
        self.peak = peak_flops(pl_module.device, str(trainer.precision))
        self._reset(time.perf_counter())
        self._last_end = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: dict, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end  # time spent fetching this batch from the loader
            self.wait_s += now - self._last_end
            self.train_s += now - self._last_end
        self._batch_start = now
        self._sampled = self.batches % self.log_every == 0
        if self._sampled:
            self._marks = {"start": self._sync(pl_module)}

    def _sync(self, pl_module: Any) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_before_backward(self, trainer: L.Trainer, pl_module: Any, loss: torch.Tensor) -> None:
        if self._sampled:
            self._marks["forward"] = self._sync(pl_module)

    def on_after_backward(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self._sampled:
            self._marks["backward"] = self._sync(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        n_tgt = int(batch["n_tokens"])
        fpt = batch_flops_per_token(pl_module.model, batch)
        self._tokens += n_tgt
        self.total_tokens += n_tgt
        self._flops += fpt * n_tgt
        self.flops += fpt * n_tgt
        self._last_end = self._sync(pl_module) if self._sampled else time.perf_counter()
        self.batches += 1
        self.train_s += self._last_end - self._batch_start
        marks = self._marks
        if self._sampled and "forward" in marks and "backward" in marks:
            self.split_s["forward"] += marks["forward"] - marks["start"]
            self.split_s["backward"] += marks["backward"] - marks["forward"]
            self.split_s["optimizer"] += self._last_end - marks["backward"]
            self.split_batches += 1
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

    def run_timing(self, world_size: int) -> dict[str, Any]:
        """This start's measured time for the result record: tokens/s and FLOP/s over all ranks, and seconds per
        batch of each phase (forward, backward and optimizer from the sampled batches; data wait from all)."""
        per = max(1, self.split_batches)
        train_s = max(self.train_s, 1e-9)
        tokens = self._tokens_this_start * world_size
        return {
            "tokens_per_s": tokens / train_s,
            "flops_per_s": self.flops * world_size / train_s,
            "train_wall_s": self.train_s,
            "batches": self.batches,
            "step_s": {
                **{k: v / per for k, v in self.split_s.items()},
                "data_wait": self.wait_s / max(1, self.batches),
                "total": self.train_s / max(1, self.batches),
            },
            "split_sampled_batches": self.split_batches,
        }


def hardware_descriptor(device: torch.device, world_size: int, precision: str) -> dict[str, Any]:
    """What a run's timings were measured on: device name and type, how many, precision, CPU threads."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        lowered = name.lower()
        kind = next(
            (k for k in ("h200", "h100", "a100", "l40s", "a10", "v100", "t4") if k in lowered), "cuda"
        )
    else:
        name, kind = cpu_name(), "cpu"
    return {"device": name, "device_type": kind, "count": world_size, "precision": precision,
            "threads": torch.get_num_threads()}  # fmt: skip


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for hardware descriptors and benchmark results."""
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115 - a short read of a proc file
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"
