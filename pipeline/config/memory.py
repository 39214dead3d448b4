"""The config keys of the known-truth memory tasks: `data.task: mqar | copy` and their sections.

`data.mqar.*` and `data.copy.*` are the generators' keys (`pipeline/data/memory_tasks.py`), `data.memory.*` the
split sizes and the generator's seed; together they are the task's spec (`pipeline/data/memory_spec.py`, which
owns its checks, vocabulary and length), recorded in the data dir's manifest. The model's vocabulary follows the
task (`model_vocab_size`: MQAR's `data.mqar.vocab_size`, copy's 4 symbols + `data.copy.alphabet_size`);
`data.vocab_size` is the BPE size of the text tasks only. The model is decoder-only (`model_task` is `lm` for
these tasks). Below `schema.py`, which holds these sections; the spec module (numpy) is imported only inside the
functions, so loading a text task's config never imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config.errors import ConfigError
from pipeline.config.keys import key

if TYPE_CHECKING:
    from pipeline.config.schema import DataConfig

MEMORY_TASKS = ("mqar", "copy")  # = pipeline.data.memory_spec.MEMORY_TASKS (not imported here: numpy)


@dataclass
class MqarConfig:
    vocab_size: int = key(
        8192, "V: keys from 1..V/2-1, values from V/2..V-1 (Zoology); the model's vocabulary (data.task=mqar)",
        gt=3,
    )  # fmt: skip
    n_pairs: int = key(8, "N: key-value pairs per sequence, each queried once", gt=0)
    seq_len: int = key(128, "L: tokens per sequence (>= 4 N: the pairs, then a query slot per pair)", gt=0)
    power_a: float = key(0.01, "query gap law p(g) ∝ a (g+1)^(a-1) (Zoology a=0.01: queries near the pairs; 1 = uniform)", gt=0)  # fmt: skip
    filler: str = key("random", "tokens between queries: random ids (Zoology's default) or zeros (its Fig. 2)",
                      choices=("random", "zeros"))  # fmt: skip


@dataclass
class CopyConfig:
    alphabet_size: int = key(
        26, "letters x is drawn from (`$x|x.`, Jelassi et al. 2024); vocab = 4 + this", gt=0
    )
    min_len: int = key(1, "shortest string of the train split", gt=0)
    max_len: int = key(50, "longest string of the train split (a sequence holds 2 max_len + 3 tokens)", gt=0)
    eval_min_len: int = key(1, "shortest string of the validation and test splits", gt=0)
    eval_max_len: int = key(
        60, "longest string of the validation and test splits (length generalisation)", gt=0
    )


@dataclass
class MemoryConfig:
    train_examples: int = key(10000, "data.task=mqar/copy: generated train sequences", gt=0)
    valid_examples: int = key(1000, "data.task=mqar/copy: generated validation sequences (the record's metrics)", gt=0)  # fmt: skip
    test_examples: int = key(1000, "data.task=mqar/copy: generated test sequences", gt=0)
    seed: int = key(0, "seed of the generated examples (each split its own stream, contents disjoint)", ge=0,
                    lt=2**32)  # fmt: skip


def memory_spec_of(data: DataConfig) -> dict[str, Any]:
    """The task spec (`pipeline/data/memory_spec.py`) of a mqar/copy data section."""
    section = data.mqar if data.task == "mqar" else data.copy
    return {"task": data.task, **asdict(section), **asdict(data.memory)}


def model_vocab_size(data: DataConfig) -> int:
    """The model's vocabulary: the task's ids for mqar/copy, else the BPE vocabulary `data.vocab_size`."""
    if data.task not in MEMORY_TASKS:
        return int(data.vocab_size)
    from pipeline.data.memory_spec import vocab_size

    return vocab_size(memory_spec_of(data))


def memory_seq_len(data: DataConfig) -> int:
    """The longest sequence of the task: L for MQAR, `$x|x.` of the longest train or eval string for copy."""
    from pipeline.data.memory_spec import seq_len

    return seq_len(memory_spec_of(data))


def check_memory(data: DataConfig, model_max_len: int | None) -> None:
    """The generator's checks as config errors naming `data.<task>.<key>`, and a Transformer's position table
    long enough for the longest sequence."""
    from pipeline.data.memory_spec import check_spec

    try:
        check_spec(memory_spec_of(data))
    except ValueError as err:
        text = str(err)
        for name in ("train_examples", "valid_examples", "test_examples", "seed"):
            text = text.replace(f"{data.task}.{name}=", f"data.memory.{name}=")
        raise ConfigError(f"data.{text}" if text.startswith(MEMORY_TASKS) else text) from err
    need = memory_seq_len(data)
    if model_max_len is not None and model_max_len < need:
        what = (
            f"data.mqar.seq_len={need}"
            if data.task == "mqar"
            else f"data.copy max_len/eval_max_len={max(data.copy.max_len, data.copy.eval_max_len)} "
            f"(`$x|x.` = {need} tokens)"
        )
        raise ConfigError(
            f"model.max_len={model_max_len} is shorter than {what}: the Transformer's position table needs "
            f"model.max_len >= {need}"
        )


def unused_sections(data: DataConfig) -> list[str]:
    """Warnings: a memory task's section set away from its defaults while data.task does not read it."""
    used = {"mqar": ("mqar", "memory"), "copy": ("copy", "memory")}.get(data.task, ())
    defaults = {"mqar": MqarConfig(), "copy": CopyConfig(), "memory": MemoryConfig()}
    return [
        f"data.{name}.* does nothing with data.task={data.task}"
        for name, default in defaults.items()
        if name not in used and getattr(data, name) != default
    ]
