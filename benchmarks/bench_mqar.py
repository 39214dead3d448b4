"""Suite `mqar`: one MQAR training step per architecture at the recall study's shape, through `pipeline train`'s
step and through a hand-written loop in the same run: the seconds a step that size a memory-task study
(runs x steps x seconds a step; configs/sweeps/recall-cpu.yaml).

The pipeline side is the real trainer (`build_trainer` fitting a `Seq2SeqModule` with `data.task: mqar`): the
model's `lm_hidden`, the output projection at the answers only (`AnswerForward`, through `train.compile`'s wrapper,
eager here), the answer-only loss, Lightning's optimisation and every callback of a run. The plain side
(`AnswerPlainLoop`) writes that step by hand: `lm_hidden`, the projection at a boolean mask of the answers,
cross-entropy, backward, clip, AdamW, schedule. Both start from the same weights and train on the same real loader
batches (the task generated into a temporary directory, read by the run's loader), interleaved as
`trainer_timing.py` does (paired steps on a CPU, windows on a GPU). Per architecture: tokens/s and seconds a step of
each, and pipeline/plain (the median of per-repeat tokens/s ratios), with the FLOPs a token as the record counts
them (docs/flops.md, last section).

Shape (`MqarShape`; `python -m benchmarks.run --suites mqar --mqar d_model=64 rows=512`): by default d_model 32,
2 layers, V 64, L 32, N 4, 256 sequences a batch, zeros between the queries; `--quick` shrinks it (`QUICK`). The
recurrent arms run without attention and dropout, `residual_lstm` from layer 1; the Transformer has one head and
`max_len` L (as configs/sweeps/recall-cpu.yaml).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Batch, BenchSettings, PlainLoop, spread
from benchmarks.throughput import quiet_lightning
from benchmarks.trainer_timing import repeat
from pipeline.config import ConfigError, RunConfig, config_from_dict, to_dict

ARCHS = ("lstm", "residual_lstm", "transformer", "lstm_no_cell_residual", "minlstm")


@dataclass(frozen=True)
class MqarShape:
    """The task and model a step is timed at, and how long: warm-up steps, timed steps, repeats."""

    d_model: int = 32
    n_layers: int = 2
    vocab_size: int = 64  # V
    seq_len: int = 32  # L
    n_pairs: int = 4  # N
    rows: int = 256  # sequences a batch
    filler: str = "zeros"
    warmup: int = 2
    steps: int = 8
    repeats: int = 3


QUICK = MqarShape(d_model=16, vocab_size=32, seq_len=16, n_pairs=2, rows=16, warmup=1, steps=2, repeats=2)


def parse_shape(items: list[str], quick: bool = False) -> MqarShape:
    """`QUICK` or the default shape with `key=value` items applied; a bad item is a ValueError naming it."""
    base = QUICK if quick else MqarShape()
    types = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(MqarShape)}
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in types:
            raise ValueError(f"--mqar {item!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        try:
            value = types[name](raw)
        except ValueError:
            raise ValueError(f"--mqar {item!r}: {name} must be {types[name].__name__}") from None
        if isinstance(value, int) and value < 1:
            raise ValueError(f"--mqar {item!r}: {name} must be >= 1")
        changes[name] = value
    shape = dataclasses.replace(base, **changes)
    try:  # the task's own checks (L >= 4 N, V holds N distinct keys), before anything runs
        bench_config(BenchSettings(), shape, "transformer", Path("unused"), 1)
    except ConfigError as err:
        raise ValueError(f"--mqar {' '.join(items)}: {err}") from None
    return shape


def model_section(arch: str, shape: MqarShape) -> dict[str, Any]:
    section: dict[str, Any] = {
        "arch": arch,
        "d_model": shape.d_model,
        "n_layers": shape.n_layers,
        "dropout": 0.0,
    }
    if arch == "transformer":
        return section | {"n_heads": 1, "max_len": shape.seq_len}
    return section | {"attention": False} | ({"residual_from": 1} if arch == "residual_lstm" else {})


def bench_config(
    settings: BenchSettings, shape: MqarShape, arch: str, data_dir: Path, n_batches: int
) -> RunConfig:
    """The run config both loops train with, validated as a run's (a shape the task cannot hold is one line)."""
    cfg = RunConfig(name=f"bench-mqar-{arch}", model=model_section(arch, shape))
    d = cfg.data
    d.dir, d.task, d.batch_tokens, d.num_workers = str(data_dir), "mqar", shape.rows * shape.seq_len, 0
    d.mqar.vocab_size, d.mqar.n_pairs, d.mqar.seq_len = shape.vocab_size, shape.n_pairs, shape.seq_len
    d.mqar.filler = shape.filler
    d.memory.train_examples, d.memory.valid_examples, d.memory.test_examples = shape.rows * n_batches, 64, 64
    cfg.optim.label_smoothing, cfg.optim.weight_decay = 0.0, 0.1  # as configs/tiny/mqar.yaml
    t = cfg.train
    t.max_steps, t.val_every, t.log_every = shape.warmup + shape.steps, 10**9, min(10, shape.steps)
    t.precision, t.accelerator, t.bleu_samples = settings.precision, settings.device, 0
    cfg.logging.wandb, cfg.logging.progress_bar = False, False
    return config_from_dict(to_dict(cfg), "--mqar shape")


def mqar_batches(cfg: RunConfig, n: int) -> list[Batch]:
    """The first `n` train batches of the run's own loader over the task generated into `cfg.data.dir`."""
    from pipeline.data.stream.loader import build_loader
    from pipeline.training.run_data import loader_max_len, prepare_run_data

    d = cfg.data
    prepare_run_data(d)
    loader = build_loader(d.dir, "train", batch_tokens=d.batch_tokens, max_len=loader_max_len(d), seed=cfg.seed,
                          infinite=True, bucket_size=d.bucket_size)  # fmt: skip
    batches: list[Batch] = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n:
            return batches
    return batches


class AnswerPlainLoop(PlainLoop):
    """`PlainLoop` with the memory tasks' loss by hand: the projection at a boolean mask of the answers only."""

    def loss(self, batch: Batch) -> torch.Tensor:
        where = batch["tgt_out"] != 0
        logits = self.model.out_proj(self.model.lm_hidden(batch["tgt_in"])[where])
        return F.cross_entropy(
            logits.float(), batch["tgt_out"][where], label_smoothing=self.optim.label_smoothing
        )


def bench_one(settings: BenchSettings, shape: MqarShape, arch: str, cfg: RunConfig, batches: list[Batch]) -> dict[str, Any]:  # fmt: skip
    from pipeline.training.run_model import run_model
    from pipeline.training.throughput import batch_flops_per_token

    torch.manual_seed(0)
    model = run_model(cfg)
    # one untimed pass over the batches first: the first sight of a shape is charged to neither loop
    AnswerPlainLoop(model, cfg.optim, len(batches), settings.torch_device, settings.precision).run(
        batches, len(batches), 0
    )
    per_repeat = [
        repeat(settings, cfg, batches, shape.warmup, shape.steps, r, AnswerPlainLoop)
        for r in range(shape.repeats)
    ]
    c = settings.clock

    def over(key: str) -> dict[str, float]:
        return spread([p[key] for p in per_repeat])

    def step_s(who: str) -> dict[str, float]:
        return spread(
            [p["tokens_per_window"] / shape.steps / p[f"{who}_{c}_tokens_per_s"] for p in per_repeat]
        )

    first = batches[0]
    return {
        "arch": arch,
        "model": cfg.model,
        "params": model.num_params(),
        "rows": int(first["tgt_in"].shape[0]),
        "tokens_per_batch": int(first["n_tokens"]),
        "answers_per_batch": int(first["n_answers"]),
        "flops_per_token": batch_flops_per_token(model, first),
        "warmup_steps": shape.warmup,
        "timed_steps": shape.steps,
        "repeats": shape.repeats,
        "clock": c,
        "method": per_repeat[0]["method"],
        "pipeline_tokens_per_s": over(f"trainer_{c}_tokens_per_s"),
        "plain_tokens_per_s": over(f"plain_{c}_tokens_per_s"),
        "pipeline_step_s": step_s("trainer"),
        "plain_step_s": step_s("plain"),
        "ratio": over(f"{c}_ratio"),  # pipeline / plain tokens/s
        "wall_ratio": over("wall_ratio"),
        "pipeline_flops_per_s": over(f"trainer_{c}_flops_per_s"),
        "per_repeat": per_repeat,
    }


def run(settings: BenchSettings, shape: MqarShape | None = None, log: Any = print,
        on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Every architecture at `shape` (default: `QUICK` with --quick, else `MqarShape()`); `on_update` gets the
    result so far after each architecture (benchmarks/run.py writes the JSON then)."""
    shape = shape or (QUICK if settings.quick else MqarShape())
    n_batches = 4 if settings.quick else min(shape.warmup + shape.steps, 8)
    rows: list[dict[str, Any]] = []
    result = {
        "clock": settings.clock,
        "shape": asdict(shape),
        "archs": list(ARCHS),
        "rows": rows,
        "complete": False,
    }
    with tempfile.TemporaryDirectory(prefix="bench-mqar-") as tmp:
        batches: list[Batch] = []
        for arch in ARCHS:
            cfg = bench_config(settings, shape, arch, Path(tmp) / "data", n_batches)
            batches = batches or mqar_batches(cfg, n_batches)  # one task for every arch
            t0 = time.perf_counter()
            with quiet_lightning():
                row = bench_one(settings, shape, arch, cfg, batches)
            rows.append(row)
            log(f"mqar {arch:>22}: pipeline {row['pipeline_step_s']['median'] * 1e3:.1f} ms/step, plain "
                f"{row['plain_step_s']['median'] * 1e3:.1f} ms/step, pipeline/plain {row['ratio']['median']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
            if on_update:
                on_update(result)
    result["complete"] = True
    return result
