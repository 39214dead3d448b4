"""Checks across keys and against this machine: combinations that cannot run, contradictions that still run (a key
unused in this mode: a `ConfigWarning`), a Transformer position table too short for the data, files the config
names, and the GPU it asks for. Nothing here imports torch at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.errors import ConfigError
from pipeline.config.memory import MEMORY_TASKS, memory_seq_len, unused_sections
from pipeline.config.yaml_files import load_mapping

if TYPE_CHECKING:
    from pipeline.config.schema import RunConfig


def contradictions(cfg: RunConfig) -> list[str]:
    """Keys that do nothing in this mode, and intervals longer than the run: legal, but probably not meant."""
    t, o, log = cfg.train, cfg.optim, cfg.logging
    out = []
    if t.strategy != "deepspeed":
        for name, unused in (
            ("zero_stage", t.zero_stage != 2),
            ("offload_optimizer", t.offload_optimizer),
            ("deepspeed_config", t.deepspeed_config is not None),
        ):
            if unused:
                value = getattr(t, name)
                out.append(f"train.{name}={value!r} does nothing without train.strategy=deepspeed")
    if o.schedule == "halving":
        if o.warmup_steps:
            out.append(f"optim.warmup_steps={o.warmup_steps} does nothing with optim.schedule=halving")
        if not o.halve_every:
            out.append("optim.schedule=halving with optim.halve_every=0 never halves: the lr stays constant")
        elif o.halve_after >= t.max_steps:
            out.append(
                f"optim.halve_after={o.halve_after} >= train.max_steps={t.max_steps}: the lr never halves during the run"
            )
    elif o.halve_after or o.halve_every:
        out.append(f"optim.halve_after/halve_every do nothing with optim.schedule={o.schedule}")
    if o.schedule != "cosine" and o.min_lr_ratio != 0.1:
        out.append(f"optim.min_lr_ratio={o.min_lr_ratio} does nothing with optim.schedule={o.schedule}")
    if o.schedule != "halving" and o.warmup_steps >= t.max_steps:
        out.append(
            f"optim.warmup_steps={o.warmup_steps} >= train.max_steps={t.max_steps}: the run ends inside the warmup"
        )
    if o.name == "adamw" and o.momentum:
        out.append(f"optim.momentum={o.momentum} does nothing with optim.name=adamw (betas apply)")
    if o.name == "sgd" and o.betas != (0.9, 0.98):
        out.append(f"optim.betas={list(o.betas)} does nothing with optim.name=sgd")
    if t.val_every > t.max_steps:
        out.append(
            f"train.val_every={t.val_every} > train.max_steps={t.max_steps}: the run validates once, at its end"
        )
    for name in ("ckpt_every", "log_every", "grad_reach_every"):
        every = getattr(t, name)
        if every > t.max_steps:
            out.append(
                f"train.{name}={every} > train.max_steps={t.max_steps}: it never happens during the run"
            )
    d = cfg.data
    if d.context != 511 and d.task != "lm":  # the default: BOS + 511 tokens fill a 512-position table
        out.append(
            f"data.context={d.context} does nothing with data.task={d.task} (it is the lm window length)"
        )
    if d.passage_len != 256 and d.task != "passages":
        out.append(f"data.passage_len={d.passage_len} does nothing with data.task={d.task}")
    pair = d.corpus.startswith(("parallel:", "tsv:")) or (d.corpus.startswith("bible:") and "-" in d.corpus)
    if d.task == "lm" and pair:
        out.append(f"data.corpus={d.corpus} is parallel text, but data.task=lm reads monolingual text (preparing "
                   "it fails): use data.corpus=bible:4+k+3 (translations joined by '+'), text:FILE or docs:DIR")  # fmt: skip
    if d.corpus.startswith("docs:") and d.task != "lm":
        out.append(f"data.corpus={d.corpus} is a directory of documents for data.task=lm, not for data.task={d.task} "
                   "(preparing it fails)")  # fmt: skip
    if d.task in ("lm", *MEMORY_TASKS) and cfg.train.bleu_samples:
        out.append(
            f"train.bleu_samples={cfg.train.bleu_samples} does nothing with data.task={d.task} (no translation)"
        )
    if cfg.train.eval_contexts is not None and d.task != "lm":
        out.append(
            f"train.eval_contexts={cfg.train.eval_contexts} does nothing with data.task={d.task} (LM only)"
        )
    for name, default in (("eval_stride", 1), ("eval_windows", 0)):
        if getattr(cfg.train, name) != default and not cfg.train.eval_contexts:
            out.append(f"train.{name}={getattr(cfg.train, name)} does nothing without train.eval_contexts")
    out += unused_sections(d)
    if not log.wandb and (log.wandb_mode != "offline" or log.entity is not None):
        out.append("logging.wandb_mode/entity do nothing with logging.wandb=false")
    return out


def check_cross_keys(cfg: RunConfig) -> None:
    """Combinations that cannot run anywhere."""
    if cfg.train.stop_at_accuracy is not None and cfg.data.task not in MEMORY_TASKS:
        raise ConfigError(
            f"train.stop_at_accuracy={cfg.train.stop_at_accuracy} needs data.task=mqar or copy (it stops on "
            f"the answer accuracy), but data.task={cfg.data.task}"
        )
    if cfg.train.precision == "16-mixed" and cfg.train.accelerator == "cpu":
        raise ConfigError(
            "train.precision=16-mixed needs a GPU but train.accelerator=cpu; use 32-true or bf16-mixed"
        )


def sequence_len(data: Any) -> int:
    """Longest target of the task in tokens: the LM window (BOS + `data.context` tokens in, context + 1 targets),
    a memory task's sequence, the passage side, or `data.max_len`."""
    if data.task == "lm":
        return int(data.context) + 1
    if data.task in MEMORY_TASKS:
        return memory_seq_len(data)
    return int(data.passage_len) if data.task == "passages" else int(data.max_len)


def check_position_table(data: Any, train: Any, model_max_len: int | None) -> None:
    """A Transformer's position table must hold the longest decoder input and every decoded position.

    The longest input: the LM window, or BOS + the longest target (`data.max_len`, or `data.passage_len`; the
    prepared data's manifest records the same value, a data dir prepared otherwise is refused); the source side is
    at most that long without BOS. Decoding (final evaluation, when `train.bleu_samples` > 0) feeds positions
    0 .. `train.decode_max_len` - 1. Checked here so that a run refuses at start, not at its first long batch or
    in its final evaluation."""
    if model_max_len is None:
        return
    need = sequence_len(data) + (data.task != "lm")  # seq2seq targets are fed with BOS in front
    length = {
        "lm": f"data.context={data.context} (+ BOS)",
        "passages": f"data.passage_len={data.passage_len} (+ BOS)",
    }.get(data.task, f"data.max_len={data.max_len} (+ BOS)")
    if model_max_len < need:
        raise ConfigError(
            f"model.max_len={model_max_len} is shorter than {length}: the Transformer's position table needs "
            f"model.max_len >= {need}"
        )
    decodes = data.task != "lm" and train.bleu_samples > 0
    if decodes and model_max_len < train.decode_max_len:
        raise ConfigError(
            f"train.decode_max_len={train.decode_max_len} is past model.max_len={model_max_len}: decoding in the "
            f"final evaluation (train.bleu_samples={train.bleu_samples}) needs model.max_len >= "
            f"{train.decode_max_len}, or a shorter train.decode_max_len"
        )


def check_decode_positions(decode_max_len: int, model_max_len: int | None) -> None:
    """`pipeline evaluate` decodes with the run's `train.decode_max_len`: refuse before decoding past the table."""
    if model_max_len is not None and model_max_len < decode_max_len:
        raise ConfigError(
            f"train.decode_max_len={decode_max_len} of this run is past its model.max_len={model_max_len}: "
            "decoding would run past the Transformer's position table"
        )


def check_machine(cfg: RunConfig, gpu: bool = True) -> None:
    """Files the config names exist, and (if `gpu`) the GPU it asks for is here; torch is imported only then.

    `gpu=False` where a config is planned on one machine to run on another (a login node rendering a GPU job).
    """
    if cfg.train.deepspeed_config is not None:
        load_mapping(Path(cfg.train.deepspeed_config), "train.deepspeed_config")
    t = cfg.train
    wants_gpu = t.accelerator in ("gpu", "cuda") or (t.precision == "16-mixed" and t.accelerator == "auto")
    if not gpu or not wants_gpu:
        return
    import torch

    why = f"train.accelerator={t.accelerator}" if t.accelerator != "auto" else "train.precision=16-mixed"
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{why} needs a GPU but this machine has none (torch.cuda.is_available() is False); "
            "use train.accelerator=cpu and train.precision=32-true or bf16-mixed"
        )
    if t.devices > torch.cuda.device_count():
        raise ConfigError(
            f"train.devices={t.devices} but this machine has {torch.cuda.device_count()} GPU(s)"
        )
