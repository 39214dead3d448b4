"""Suite 1 (+4): tokens/s of `pipeline train`'s step versus the hand-written loop, and achieved FLOP/s / MFU.

The trainer side is the real thing: `pipeline.training.trainer.build_trainer` (same callbacks, `ThroughputCallback`
included, CSV logging on, W&B and the progress bar off as in a batch job) fitting a `Seq2SeqModule`. The plain side
is `common.PlainLoop`. Both get the same initial weights, the same fixed list of real loader batches in the same
order, the same precision and thread count, in this process; how the two are interleaved and clocked is in
`trainer_timing.py`. The headline is the median over repeats of the per-repeat ratio trainer/plain tokens/s
(goal >= 0.97), with its min and max.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BenchSettings, PlainLoop, real_batches, spread
from benchmarks.trainer_timing import repeat
from pipeline.config import RunConfig, load_config

ARCHS = ("lstm", "residual_lstm", "transformer")
# Trainer logging every min(10, timed steps) steps: the default rate (10), and at least one logged step per window.
LOG_EVERY = 10

# Sizes per device. Models "tiny"/"demo" are read from configs/tiny and configs/demo so they follow those files.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"configs": "configs/tiny", "batch_tokens": 256, "warmup": 2, "steps": 10, "repeats": 3},
    "small": {
        "models": {
            "lstm": {"arch": "lstm", "d_model": 64, "n_layers": 2, "attention": True, "dropout": 0.1},
            "residual_lstm": {"arch": "residual_lstm", "d_model": 64, "n_layers": 3, "residual_from": 1, "dropout": 0.1},
            "transformer": {"arch": "transformer", "d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.1},
        },
        "batch_tokens": 1024, "warmup": 2, "steps": 8, "repeats": 3,
    },
    "demo": {"configs": "configs/demo", "batch_tokens": 3072, "warmup": 1, "steps": 3, "repeats": 2},
    "gpu-medium": {
        "models": {
            "lstm": {"arch": "lstm", "d_model": 512, "n_layers": 4, "attention": True, "dropout": 0.1},
            "residual_lstm": {"arch": "residual_lstm", "d_model": 512, "n_layers": 4, "residual_from": 2, "dropout": 0.1},
            "transformer": {"arch": "transformer", "d_model": 512, "n_layers": 6, "n_heads": 8, "dropout": 0.1},
        },
        "batch_tokens": 8192, "warmup": 5, "steps": 30, "repeats": 5,
    },
    "gpu-large": {
        "models": {
            "lstm": {"arch": "lstm", "d_model": 1024, "n_layers": 4, "attention": True, "dropout": 0.1},
            "residual_lstm": {"arch": "residual_lstm", "d_model": 1024, "n_layers": 8, "residual_from": 2, "dropout": 0.1},
            "transformer": {"arch": "transformer", "d_model": 1024, "n_layers": 6, "n_heads": 16, "dropout": 0.1},
        },
        "batch_tokens": 16384, "warmup": 5, "steps": 30, "repeats": 5,
    },
}  # fmt: skip


def default_sizes(settings: BenchSettings) -> list[str]:
    if settings.quick:
        return ["tiny"]
    # tiny: where a fixed per-step framework cost shows; small and demo: the two sizes compared
    return ["gpu-medium", "gpu-large"] if settings.device == "cuda" else ["tiny", "small", "demo"]


def model_section(size: str, arch: str) -> dict[str, Any]:
    spec = SIZES[size]
    if "models" in spec:
        return dict(spec["models"][arch])
    configs = Path(spec["configs"])
    return load_config([configs / "base.yaml", configs / f"{arch}.yaml"]).model


def bench_config(
    settings: BenchSettings, size: str, arch: str, data: dict[str, Any], warmup: int, steps: int
) -> RunConfig:
    """The run config both loops train with; `data` is the prepared data's vocab_size/max_len."""
    max_steps = warmup + steps
    cfg = RunConfig(name=f"bench-{size}-{arch}", model=model_section(size, arch))
    cfg.data.dir, cfg.data.vocab_size, cfg.data.max_len = (
        settings.data_dir,
        data["vocab_size"],
        data["max_len"],
    )
    cfg.data.batch_tokens = SIZES[size]["batch_tokens"]
    cfg.train.max_steps, cfg.train.val_every, cfg.train.log_every = max_steps, 10**9, min(LOG_EVERY, steps)
    cfg.train.precision = settings.precision
    cfg.train.accelerator = settings.device
    cfg.logging.wandb, cfg.logging.progress_bar = False, False
    if cfg.model["arch"] == "transformer":
        cfg.model.setdefault("max_len", data["max_len"] + 1)
    return cfg


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's per-fit banners and the 'few workers' hint would bury the benchmark's own output."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def bench_one(
    settings: BenchSettings, size: str, arch: str, batches: list[dict], data: dict[str, Any]
) -> dict[str, Any]:
    from pipeline.models.registry import build_model
    from pipeline.training.throughput import peak_flops

    spec = SIZES[size]
    warmup, steps, repeats = (1, 3, 2) if settings.quick else (spec["warmup"], spec["steps"], spec["repeats"])
    cfg = bench_config(settings, size, arch, data, warmup, steps)
    # One untimed pass over every batch shape first: the first sight of a shape (allocator, oneDNN primitive cache)
    # would otherwise be charged to whichever loop meets it first.
    torch.manual_seed(0)
    model = build_model(**{**cfg.model, "vocab_size": data["vocab_size"]})
    PlainLoop(model, cfg.optim, len(batches), settings.torch_device, settings.precision).run(
        batches, len(batches), 0
    )
    per_repeat = [repeat(settings, cfg, batches, warmup, steps, r) for r in range(repeats)]
    c = settings.clock

    def over_repeats(key: str) -> dict[str, float]:
        return spread([p[key] for p in per_repeat])

    peak = peak_flops(settings.torch_device, settings.precision)
    trainer_fps = over_repeats(f"trainer_{c}_flops_per_s")
    return {
        "arch": arch,
        "size": size,
        "model": cfg.model,
        "params": model.num_params(),
        "batch_tokens": cfg.data.batch_tokens,
        "batches": len(batches),
        "warmup_steps": warmup,
        "timed_steps": steps,
        "log_every": cfg.train.log_every,
        "repeats": repeats,
        "clock": c,
        "method": per_repeat[0]["method"],
        "trainer_tokens_per_s": over_repeats(f"trainer_{c}_tokens_per_s"),
        "plain_tokens_per_s": over_repeats(f"plain_{c}_tokens_per_s"),
        "ratio": over_repeats(f"{c}_ratio"),
        "wall_ratio": over_repeats("wall_ratio"),
        "step_ratio": over_repeats("step_ratio_median") if c == "cpu" else None,
        "trainer_flops_per_s": trainer_fps,
        "plain_flops_per_s": over_repeats(f"plain_{c}_flops_per_s"),
        "peak_flops_per_s": peak,
        "mfu": None if peak is None else trainer_fps["median"] / peak,
        "per_repeat": per_repeat,
    }


def run(settings: BenchSettings, data: dict[str, Any], log: Any = print) -> dict[str, Any]:
    """All sizes x architectures; `data` holds the prepared data's vocab_size and max_len."""
    rows = []
    for size in settings.sizes or default_sizes(settings):
        spec = SIZES[size]
        n_batches = 4 if settings.quick else min(spec["warmup"] + spec["steps"], 16)
        batches = real_batches(settings.data_dir, spec["batch_tokens"], n_batches, max_len=data["max_len"])
        for arch in ARCHS:
            t0 = time.perf_counter()
            with quiet_lightning():
                row = bench_one(settings, size, arch, batches, data)
            rows.append(row)
            log(
                f"throughput {size:>10} {arch:>13}: trainer/plain = {row['ratio']['median']:.3f} "
                f"[{row['ratio']['min']:.3f}, {row['ratio']['max']:.3f}], "
                f"plain {row['plain_tokens_per_s']['median']:.0f} tok/s ({time.perf_counter() - t0:.0f} s)"
            )
    mfu_note = (
        "MFU = achieved / peak FLOP/s of the device at this precision "
        "(lightning.fabric.utilities.throughput.get_available_flops)"
        if settings.device == "cuda"
        else "CPU: no official peak FLOP/s, so no MFU; achieved FLOP/s only (MFU needs a GPU's peak, --device cuda)"
    )
    return {"clock": settings.clock, "mfu_note": mfu_note, "rows": rows}
