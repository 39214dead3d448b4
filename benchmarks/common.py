"""What every suite shares: the run settings, the machine description, robust statistics, batches, the plain loop.

The plain loop is the reference the trainer is measured against: it does by hand exactly what
`Seq2SeqModule.training_step` plus Lightning's automatic optimisation do for one step (forward, `seq2seq_train_loss`,
backward, global-norm clip, AdamW step, zero_grad, LR-schedule step), with the same optimiser groups, and nothing
else (no hooks, no logging, no checkpoint bookkeeping).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config import OptimConfig
from pipeline.models.base import Seq2SeqModel
from pipeline.training.module import seq2seq_loss, seq2seq_train_loss
from pipeline.training.schedule import lr_multiplier

Batch = dict[str, Any]


@dataclass
class BenchSettings:
    """One `benchmarks.run` invocation: device, precision, repeats and sizes (quick mode shrinks them)."""

    device: str = "cpu"  # cpu | cuda
    precision: str = "32-true"  # 32-true | bf16-mixed
    threads: int = 1  # torch intra-op threads on CPU (set deliberately, see README)
    quick: bool = False
    data_dir: str = "data/bible-en-fr"  # configs/demo/base.yaml's data; prepared on first use
    repeats: int = 3
    sizes: list[str] = field(default_factory=list)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def clock(self) -> str:
        """The headline clock: process CPU time on a (shared) CPU, the wall clock on a GPU (see `Clock`)."""
        return "cpu" if self.device == "cpu" else "wall"


def machine_info(settings: BenchSettings) -> dict[str, Any]:
    """CPU model, cores, torch/lightning versions, threads and (if any) the GPU: stored with every result."""
    import lightning

    from pipeline.training.throughput import cpu_name

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": settings.device,
        "precision": settings.precision,
        "gpu": None,
    }
    if settings.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


def spread(values: list[float]) -> dict[str, float]:
    """Median and spread of repeated measurements (median resists the outliers a shared machine produces)."""
    values = sorted(values)
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) >= 2 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "q1": q[0],
        "q3": q[2],
        "n": len(values),
    }


class Cycle:
    """An endless iterable over a fixed list of batches (shallow copies, so a consumer may pop keys)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        while True:
            for batch in self.batches:
                yield dict(batch)


def real_batches(
    data_dir: str | Path, batch_tokens: int, n: int, max_len: int = 64, seed: int = 1234
) -> list[Batch]:
    """The first `n` train batches the real loader gives (bucketed, padded): realistic shapes for both loops."""
    from pipeline.data.stream.loader import build_loader

    loader = build_loader(
        data_dir,
        "train",
        batch_tokens=batch_tokens,
        max_len=max_len,
        seed=seed,
        infinite=True,
        bucket_size=2048,
    )
    batches: list[Batch] = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n:
            break
    return batches


def synthetic_batches(
    seq_len: int, tokens_per_batch: int, vocab_size: int, n: int, seed: int = 0
) -> list[Batch]:
    """Full-length random batches (no padding): `tokens_per_batch // seq_len` rows of `seq_len` on both sides."""
    gen = torch.Generator().manual_seed(seed)
    rows = max(1, tokens_per_batch // seq_len)
    out = []
    for _ in range(n):
        src = torch.randint(4, vocab_size, (rows, seq_len), generator=gen)
        tgt = torch.randint(4, vocab_size, (rows, seq_len), generator=gen)
        out.append(
            {
                "src": src,
                "src_mask": torch.ones(rows, seq_len, dtype=torch.bool),
                "tgt_in": torch.cat([torch.ones(rows, 1, dtype=torch.long), tgt[:, :-1]], dim=1),
                "tgt_out": tgt,
                "n_tokens": rows * seq_len,
                "n_src_tokens": rows * seq_len,
            }
        )
    return out


def batch_flops(model: Seq2SeqModel, batch: Batch) -> float:
    """Training FLOPs of one batch from the model's analytic estimate, exactly as `ThroughputCallback` counts
    (a language-model batch has source length 0; a memory task's output projection runs at its answers only)."""
    from pipeline.training.throughput import batch_flops_per_token

    return batch_flops_per_token(model, batch) * int(batch["n_tokens"])


@dataclass(frozen=True)
class Clock:
    """Wall clock and this process's CPU time, read together.

    On a shared CPU box the wall clock also counts the time other processes held the cores; the process CPU time
    counts only the work this process did (with one intra-op thread, no helper threads run), so CPU-device
    comparisons use it as the headline and report the wall-clock figures beside it.
    """

    wall: float
    cpu: float

    @staticmethod
    def now() -> Clock:
        return Clock(time.perf_counter(), time.process_time())

    def __add__(self, other: Clock) -> Clock:
        return Clock(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: Clock) -> Clock:
        return Clock(self.wall - other.wall, self.cpu - other.cpu)


@dataclass(frozen=True)
class Timing:
    """Seconds (wall and CPU), target tokens and analytic FLOPs of one timed window of training steps."""

    wall_s: float
    cpu_s: float
    tokens: int
    flops: float

    @staticmethod
    def of(start: Clock, end: Clock, batches: list[Batch], model: Seq2SeqModel) -> Timing:
        tokens = sum(int(b["n_tokens"]) for b in batches)
        flops = sum(batch_flops(model, b) for b in batches)
        return Timing(end.wall - start.wall, end.cpu - start.cpu, tokens, flops)

    def seconds(self, clock: str) -> float:
        return self.cpu_s if clock == "cpu" else self.wall_s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# "train" is what `Seq2SeqModule.training_step` computes; "train+nll" is what it computed before the fix in
# benchmarks/fixes.py (the full `seq2seq_loss`, whose unsmoothed NLL sum the step then discarded).
LOSSES = {
    "train": seq2seq_train_loss,
    "train+nll": lambda logits, tgt, smoothing: seq2seq_loss(logits, tgt, smoothing)[0],
}


AUTOCAST: dict[str, torch.dtype | None] = {
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


class PlainLoop:
    """The hand-written PyTorch training step (see the module docstring): the baseline for the trainer."""

    def __init__(self, model: Seq2SeqModel, optim: OptimConfig, max_steps: int, device: torch.device,
                 precision: str, loss: str = "train", forward: Any = None) -> None:  # fmt: skip
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}: expected one of {sorted(LOSSES)}")
        self.loss_fn = LOSSES[loss]
        self.model = model.to(device).train()
        # e.g. a compiled TrainingForward of `model` (benchmarks/roofline.py)
        self.forward = forward or self.model
        self.device = device
        self.optim = optim
        self.params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in self.params if p.dim() >= 2], "weight_decay": optim.weight_decay},
            {"params": [p for p in self.params if p.dim() < 2], "weight_decay": 0.0},
        ]
        self.opt = torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, fused=True)  # as the trainer's
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_multiplier(s, optim, max_steps))
        if precision not in AUTOCAST:
            raise ValueError(f"precision={precision!r}: the plain loop runs {', '.join(AUTOCAST)}")
        self.autocast_dtype = AUTOCAST[precision]
        # fp16 needs loss scaling (Lightning's 16-mixed does the same); bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def step(self, batch: Batch) -> None:
        batch = {
            k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
        }
        dtype = self.autocast_dtype
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = self.loss(batch)
        self.scaler.scale(loss).backward()
        if self.optim.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.params, self.optim.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()

    def loss(self, batch: Batch) -> torch.Tensor:
        """The step's forward and loss (a subclass may score other positions: benchmarks/bench_mqar.py)."""
        logits = self.forward(batch["src"], batch["src_mask"], batch["tgt_in"])
        return self.loss_fn(logits, batch["tgt_out"], self.optim.label_smoothing)

    def run(self, batches: list[Batch], warmup: int, steps: int) -> Timing:
        """Train `warmup + steps` steps over `batches` (cycled) and time the last `steps`."""
        stream = iter(Cycle(batches))
        for _ in range(warmup):
            self.step(next(stream))
        synchronize(self.device)
        used = []
        start = Clock.now()
        for _ in range(steps):
            batch = next(stream)
            self.step(batch)
            used.append(batch)
        synchronize(self.device)
        return Timing.of(start, Clock.now(), used, self.model)
