"""The run configuration's schema: typed dataclasses, each field a `key(default, help, range)` (see keys.py).

Why not LightningCLI or jsonargparse: our config spans the model registry (whose keys depend on `model.arch`), the
data, the optimiser and the cluster, and must be checked against a checkpoint's config on resume. Plain dataclasses
give exact error messages ("configs/x.yaml: unknown key 'train.max_step'; did you mean 'train.max_steps'?") and a
resolved YAML that is saved next to every run. The `model` section is a free dict here, validated against the model
registry by model_section.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.keys import key, section
from pipeline.config.memory import MEMORY_TASKS, CopyConfig, MemoryConfig, MqarConfig

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
# data.task (pipeline/data/prepare/build.py TASKS, then the generated ones: pipeline/data/memory_spec.py)
TASKS = ("translation", "passages", "lm", *MEMORY_TASKS)


@dataclass
class DataConfig:
    dir: str = key("data/bible-en-fr", "prepared shards (made by `pipeline data prepare`, or from `corpus`)")
    corpus: str = key(
        "bible:4-l", "used only when `dir` is not prepared yet: English WEB -> French Segond 1910"
    )
    vocab_size: int = key(8000, "joint BPE vocabulary size, the 4 special tokens included", gt=4)
    max_len: int = key(128, "pairs longer than this (in BPE tokens) are dropped at prepare time", gt=0)
    limit: int = key(0, "prepare only the first N pairs of the corpus (0 = all): tiny runs and tests", ge=0)
    task: str = key(
        "translation",
        "translation: a pair per verse/line; passages: consecutive verses of a chapter joined up to "
        "data.passage_len tokens; lm: decoder-only language model over data.context-token windows "
        "(model.task follows); mqar, copy: generated known-truth memory tasks, decoder-only, scored on the "
        "answers only (keys data.mqar.*, data.copy.*, data.memory.*)",
        choices=TASKS,
    )
    context: int = key(
        511,
        "data.task=lm: tokens of context per window (fed after BOS, context + 1 targets); a Transformer needs "
        "model.max_len >= context + 1",
        gt=0,
    )
    passage_len: int = key(
        256, "data.task=passages: max tokens per passage side (replaces data.max_len)", gt=0
    )
    batch_tokens: int = key(4096, "padded tokens per batch per rank (the longer of src and tgt)", gt=0)
    num_workers: int = key(1, "DataLoader worker processes per rank (0 = load in the main process)", ge=0)
    bucket_size: int = key(2048, "samples sorted by length together, to cut padding", gt=0)
    mqar: MqarConfig = section(MqarConfig, "data.task=mqar: multi-query associative recall (Zoology)")
    copy: CopyConfig = section(CopyConfig, "data.task=copy: `$x|x.` string copying (Jelassi et al. 2024)")
    memory: MemoryConfig = section(MemoryConfig, "data.task=mqar/copy: split sizes and seed")


@dataclass
class OptimConfig:
    name: str = key("adamw", "optimiser", choices=("adamw", "sgd"))
    lr: float = key(1e-3, "peak learning rate", gt=0)
    betas: tuple[float, float] = key((0.9, 0.98), "AdamW (beta1, beta2)", ge=0, lt=1)
    weight_decay: float = key(0.01, "decoupled weight decay (AdamW) or L2 (SGD)", ge=0)
    momentum: float = key(0.0, "SGD momentum (sgd only)", ge=0, lt=1)
    schedule: str = key(
        "cosine",
        "lr schedule; halving: Sutskever 2014, halve every `halve_every` after `halve_after`",
        choices=("cosine", "constant", "halving"),
    )
    warmup_steps: int = key(100, "linear warmup steps (cosine and constant schedules)", ge=0)
    min_lr_ratio: float = key(0.1, "final lr / peak lr of the cosine schedule", ge=0, le=1)
    halve_after: int = key(0, "steps before the first halving (halving schedule)", ge=0)
    halve_every: int = key(0, "steps between halvings (halving schedule)", ge=0)
    grad_clip: float = key(1.0, "max global gradient norm; 0 disables clipping", ge=0)
    label_smoothing: float = key(0.1, "label smoothing of the cross-entropy loss", ge=0, lt=1)


@dataclass
class TrainConfig:
    max_steps: int = key(1000, "optimiser steps of the run", gt=0)
    val_every: int = key(200, "steps between validations (and checkpoints)", gt=0)
    val_batches: int = key(0, "validation batches per validation (0 = the whole validation split)", ge=0)
    log_every: int = key(10, "steps between logged training metrics", gt=0)
    precision: str = key("32-true", "Lightning precision (16-mixed needs a GPU)", choices=PRECISIONS)
    accelerator: str = key(
        "auto", "device type (auto: a GPU if there is one)", choices=("auto", "cpu", "gpu", "cuda")
    )
    devices: int = key(1, "processes (CPU) or GPUs per node", gt=0)
    num_nodes: int = key(1, "nodes (SLURM sets the rest)", gt=0)
    strategy: str = key("auto", "distribution strategy", choices=("auto", "ddp", "deepspeed"))
    zero_stage: int = key(2, "DeepSpeed ZeRO stage (deepspeed only)", choices=(1, 2, 3))
    offload_optimizer: bool = key(False, "DeepSpeed: optimiser state in CPU memory (deepspeed only)")
    deepspeed_config: str | None = key(
        None, "JSON merged over the generated DeepSpeed config (deepspeed only)"
    )
    accumulate: int = key(1, "micro-batches per optimiser step", gt=0)
    deterministic: bool = key(False, "torch deterministic algorithms (slower)")
    compile: str = key(
        "none",
        "torch.compile the training forward: none (eager), model (the whole model), auto (where measured to "
        "pay: pipeline/training/compile.py); a model that cannot compile warns once and trains eager",
        choices=("none", "model", "auto"),
    )
    stop_at_accuracy: float | None = key(
        None,
        "data.task=mqar/copy: stop at the first validation whose answer accuracy is >= this (Zoology stops at "
        "0.99); the record's early_stop says where; null = train to max_steps",
        gt=0,
        le=1,
    )
    grad_reach_every: int = key(0, "steps between gradient-norm-by-position measurements (0 = off)", ge=0)
    ckpt_every: int = key(0, "steps between checkpoints (0 = every val_every); preemption also saves", ge=0)
    keep_checkpoints: int = key(2, "newest step checkpoints kept besides last.ckpt", ge=0)
    max_nonfinite_steps: int = key(
        0, "steps with a NaN/inf loss skipped (gradients dropped) before the run stops with an error", ge=0
    )
    bleu_samples: int = key(200, "test pairs decoded for BLEU/chrF at the end of `train` (0 = skip)", ge=0)
    decode_max_len: int = key(128, "max tokens of a decoded translation", gt=0)
    beam: int = key(1, "beam width of the decoding at the end of `train` (1 = greedy)", gt=0)
    length_penalty: float = key(
        0.6, "beam search: score / ((5 + length) / 6) ** this (GNMT); beam > 1 only", ge=0.0
    )
    eval_contexts: str | None = key(
        None,
        "LM: context lengths, comma-separated (e.g. '8,16,32,64'), at which the sweep scores every validation "
        "token at the end of the run (valid_truncation.npz; the record's truncation L(K)); none by default",
    )
    eval_stride: int = key(
        1,
        "LM, with eval_contexts: score every s-th validation token (the same ones at every context) at 1/s of "
        "the cost; 1 = every token",
        ge=1,
    )
    eval_windows: int = key(
        0,
        "LM, with eval_contexts: score this many validation windows, spread evenly over the split (the same in "
        "every run); 0 = all. For held-out splits of millions of tokens (a GPU corpus)",
        ge=0,
    )


@dataclass
class LoggingConfig:
    wandb: bool = key(True, "log to Weights & Biases")
    wandb_mode: str = key("offline", "W&B mode", choices=("offline", "online", "disabled"))
    project: str = key("pipeline", "W&B project")
    entity: str | None = key(None, "W&B entity (team or user; default: yours)")
    group: str | None = key(None, "W&B group (a sweep sets its grid name, so its runs sit together)")
    progress_bar: bool = key(True, "Lightning progress bar")


@dataclass
class RunConfig:
    name: str = key("run", "run name (W&B name, default run directory)")
    run_dir: str | None = key(None, "checkpoints, logs and resolved config (default: runs/<name>)")
    seed: int = key(1234, "seed of the model init and the data order", ge=0, lt=2**32)
    arm: str | None = key(
        None, "sweep arm label (a grid's archs.<label>): the result record's arch; default model.arch"
    )
    model: dict[str, Any] = section(
        lambda: {"arch": "transformer"}, "architecture and its keys (model.arch picks the registry entry)"
    )
    data: DataConfig = section(DataConfig, "data")
    optim: OptimConfig = section(OptimConfig, "optimiser")
    train: TrainConfig = section(TrainConfig, "trainer")
    logging: LoggingConfig = section(LoggingConfig, "logging")

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")
