"""Timing the real trainer against the plain loop, interleaved two ways.

- **Paired steps** (CPU, the default there): inside one `trainer.fit`, a callback runs one plain-loop step on the
  same batch in every trainer step cycle, alternating per repeat between `on_train_batch_start` and
  `on_train_batch_end`. A trainer step is the cycle time between two `on_train_batch_end` marks minus the plain step
  timed inside it. Each pair is seconds apart, so the load of a shared machine hits both alike; and on a CPU there
  are no host-device syncs a per-step clock could hide.
- **Windows** (GPU): the trainer alone times a window of `steps` steps, synchronising the device only at its two
  ends (so host-device syncs inside the step *are* measured); the plain loop times the same window; repeats
  alternate which goes first (ABBA).

Both fit a fresh seeded `Seq2SeqModule` per repeat and give the plain loop a deep copy of its initial weights.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks.common import BenchSettings, Clock, Cycle, PlainLoop, Timing, synchronize
from pipeline.config import RunConfig


class TrainerClock(L.Callback):
    """Marks the end of every trainer step; with `plain`, also runs and times one plain step per cycle."""

    def __init__(
        self, warmup: int, steps: int, plain: PlainLoop | None = None, plain_at: str = "end"
    ) -> None:
        self.warmup, self.steps, self.plain, self.plain_at = warmup, steps, plain, plain_at
        self.done = 0
        self.start = self.end = self._mark = Clock(0.0, 0.0)
        self._plain_s = Clock(0.0, 0.0)
        self.batches: list[dict[str, Any]] = []
        self.trainer_s = Clock(0.0, 0.0)  # summed over the timed steps
        self.plain_total_s = Clock(0.0, 0.0)
        self.step_ratios: list[float] = []  # per timed step: plain seconds / trainer seconds (CPU clock)

    def _plain_step(self, batch: dict) -> None:
        assert self.plain is not None
        t0 = Clock.now()
        self.plain.step(batch)
        self._plain_s = Clock.now() - t0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: dict, batch_idx: int) -> None:
        if self.plain is not None and self.plain_at == "start":
            self._plain_step(batch)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        if self.plain is not None and self.plain_at == "end":
            self._plain_step(batch)
        self.done += 1
        timed = self.warmup < self.done <= self.warmup + self.steps
        if self.plain is not None or self.done in (self.warmup, self.warmup + self.steps):
            synchronize(pl_module.device)
        mark = Clock.now()
        if self.done == self.warmup:
            self.start = mark
        if timed:
            self.batches.append(batch)
            if self.plain is not None:
                trainer_s = mark - self._mark - self._plain_s
                self.trainer_s += trainer_s
                self.plain_total_s += self._plain_s
                self.step_ratios.append(self._plain_s.cpu / max(trainer_s.cpu, 1e-9))
            if self.done == self.warmup + self.steps:
                self.end = mark
        self._mark = mark


def fit_with_clock(cfg: RunConfig, module: Any, batches: list[dict], clock: TrainerClock) -> None:
    """Fit `module` with the real trainer (`pipeline.training.trainer.build_trainer`, plus `clock`) over `batches`, cycled."""
    from pipeline.training.trainer import build_trainer

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        cfg.run_dir = tmp
        trainer = build_trainer(cfg, Path(tmp), extra_callbacks=[clock])
        trainer.fit(module, train_dataloaders=Cycle(batches))


def _rates(row: dict[str, Any], runs: dict[str, Timing]) -> dict[str, Any]:
    for clock in ("cpu", "wall"):
        for who, t in runs.items():
            row[f"{who}_{clock}_tokens_per_s"] = t.tokens / t.seconds(clock)
            row[f"{who}_{clock}_flops_per_s"] = t.flops / t.seconds(clock)
        row[f"{clock}_ratio"] = row[f"trainer_{clock}_tokens_per_s"] / row[f"plain_{clock}_tokens_per_s"]
    row["tokens_per_window"] = runs["plain"].tokens
    return row


def repeat(settings: BenchSettings, cfg: RunConfig, batches: list[dict], warmup: int, steps: int,
           r: int, plain_loop: type[PlainLoop] = PlainLoop) -> dict[str, Any]:  # fmt: skip
    """Repeat `r` of one trainer-vs-plain comparison; the method follows the device (see module docstring).
    `plain_loop`: the hand-written step's class (a memory task's scores its answers only)."""
    from pipeline.training.module import Seq2SeqModule

    torch.manual_seed(0)
    module = Seq2SeqModule(cfg)
    plain = plain_loop(copy.deepcopy(module.model), cfg.optim, warmup + steps, settings.torch_device,
                       settings.precision)  # fmt: skip
    if settings.device == "cpu":
        where = ("end", "start")[r % 2]
        clock = TrainerClock(warmup, steps, plain, plain_at=where)
        fit_with_clock(cfg, module, batches, clock)
        tokens = sum(int(b["n_tokens"]) for b in clock.batches)
        flops = Timing.of(clock.start, clock.end, clock.batches, module.model).flops
        runs = {
            "trainer": Timing(clock.trainer_s.wall, clock.trainer_s.cpu, tokens, flops),
            "plain": Timing(clock.plain_total_s.wall, clock.plain_total_s.cpu, tokens, flops),
        }
        row = {
            "method": "paired steps",
            "plain_step_at": where,
            "step_ratio_median": sorted(clock.step_ratios)[len(clock.step_ratios) // 2],
        }
        return _rates(row, runs)
    order = ("trainer", "plain") if r % 2 == 0 else ("plain", "trainer")
    runs = {}
    for who in order:
        if who == "plain":
            runs[who] = plain.run(batches, warmup, steps)
        else:
            clock = TrainerClock(warmup, steps)
            fit_with_clock(cfg, module, batches, clock)
            runs[who] = Timing.of(clock.start, clock.end, clock.batches, module.model)
    return _rates({"method": "windows", "first": order[0]}, runs)
