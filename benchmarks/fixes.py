"""Suite 5: before/after figures of each fix the measurements led to, from the same run.

Fix 1, the training loss. Profiling `pipeline train`'s step (cProfile over 200 steps of the tiny Transformer)
put `cross_entropy_loss` at 14% of the step, called twice per step: `training_step` used `seq2seq_loss`, which
also computes the unsmoothed NLL sum (a second log-softmax over [tokens x vocab]) and then threw it away. The step
now calls `seq2seq_train_loss`. Before and after are both kept reachable (`PlainLoop(loss="train+nll")` is the old
step), so this suite times them against each other: two copies of one model, one step of each on the same batch,
alternating which goes first, per-step ratios on the headline clock.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from benchmarks.common import BenchSettings, Clock, PlainLoop, real_batches, spread, synchronize
from benchmarks.throughput import ARCHS, SIZES, bench_config, default_sizes
from pipeline.models.registry import build_model

STEPS = {"tiny": 12, "small": 12, "demo": 2, "gpu-medium": 20, "gpu-large": 20}


def steps_for(settings: BenchSettings, size: str) -> int:
    return 4 if settings.quick else STEPS[size]


def loss_fix(
    settings: BenchSettings, size: str, arch: str, batches: list[dict], data: dict[str, Any]
) -> dict[str, Any]:
    n_steps = steps_for(settings, size)
    cfg = bench_config(settings, size, arch, data, 1, n_steps)
    torch.manual_seed(0)
    model = build_model(**{**cfg.model, "vocab_size": data["vocab_size"]})
    loops = {
        "before": PlainLoop(copy.deepcopy(model), cfg.optim, 10**6, settings.torch_device, settings.precision, loss="train+nll"),
        "after": PlainLoop(model, cfg.optim, 10**6, settings.torch_device, settings.precision, loss="train"),
    }  # fmt: skip
    for loop in loops.values():  # warm-up: every batch shape once, untimed
        loop.run(batches, len(batches), 0)
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    tokens = []
    for i in range(n_steps):
        batch = batches[i % len(batches)]
        for who in ("before", "after") if i % 2 == 0 else ("after", "before"):
            synchronize(settings.torch_device)
            start = Clock.now()
            loops[who].step(batch)
            synchronize(settings.torch_device)
            took = Clock.now() - start
            seconds[who].append(took.cpu if settings.clock == "cpu" else took.wall)
        tokens.append(int(batch["n_tokens"]))
    rate = {who: sum(tokens) / sum(s) for who, s in seconds.items()}
    loss_ms = loss_alone_ms(settings, loops["after"], batches[0])
    return {
        "fix": "training step computes only the smoothed loss (seq2seq_train_loss), not also the unused NLL sum",
        "size": size,
        "arch": arch,
        "steps": n_steps,
        "clock": settings.clock,
        "before_tokens_per_s": rate["before"],
        "after_tokens_per_s": rate["after"],
        "speedup": rate["after"] / rate["before"],
        "loss_ms": loss_ms,
        "step_speedup": spread([b / a for b, a in zip(seconds["before"], seconds["after"], strict=True)]),
    }


def loss_alone_ms(
    settings: BenchSettings, loop: PlainLoop, batch: dict, repeats: int = 10
) -> dict[str, float]:
    """Median ms of the loss's forward + backward alone on one batch's logits, old vs new (interleaved)."""
    from benchmarks.common import LOSSES

    dev = settings.torch_device
    with torch.no_grad():
        logits = loop.model(batch["src"].to(dev), batch["src_mask"].to(dev), batch["tgt_in"].to(dev))
    tgt, smoothing = batch["tgt_out"].to(dev), loop.optim.label_smoothing
    ms: dict[str, list[float]] = {"train+nll": [], "train": []}
    for i in range(repeats):
        for name in ("train+nll", "train") if i % 2 == 0 else ("train", "train+nll"):
            x = logits.detach().requires_grad_(True)
            synchronize(dev)
            start = Clock.now()
            LOSSES[name](x, tgt, smoothing).backward()
            synchronize(dev)
            took = Clock.now() - start
            ms[name].append(1000 * (took.cpu if settings.clock == "cpu" else took.wall))
    return {"before": spread(ms["train+nll"])["median"], "after": spread(ms["train"])["median"]}


def run(settings: BenchSettings, data: dict[str, Any], log: Any = print) -> dict[str, Any]:
    rows = []
    for size in settings.sizes or default_sizes(settings):
        batches = real_batches(
            settings.data_dir,
            SIZES[size]["batch_tokens"],
            min(steps_for(settings, size), 8),
            max_len=data["max_len"],
        )
        for arch in ARCHS:
            row = loss_fix(settings, size, arch, batches, data)
            rows.append(row)
            log(
                f"fix (loss) {size:>10} {arch:>13}: loss {row['loss_ms']['before']:.1f} -> {row['loss_ms']['after']:.1f} ms, "
                f"{row['before_tokens_per_s']:.0f} -> "
                f"{row['after_tokens_per_s']:.0f} tok/s (x{row['speedup']:.3f}; per step median "
                f"x{row['step_speedup']['median']:.3f} [{row['step_speedup']['min']:.3f}, {row['step_speedup']['max']:.3f}])"
            )
    return {"rows": rows}
