"""A known-truth memory task's spec and its samples' members: the contract that the shard writer
(``prepare/memory_shards.py``), the batch reader (``stream/memory_batches.py``) and the run config's checks
(``pipeline/config/memory.py``) share, so each reads it from here instead of keeping a copy.

A task is a plain dict, its *spec* (``memory_spec``): ``task`` (mqar or copy), the generator's keys (MQAR:
``vocab_size``, ``n_pairs``, ``seq_len``, ``power_a``, ``filler``; copy: ``alphabet_size``, ``min_len``,
``max_len`` for training and ``eval_min_len``, ``eval_max_len`` for validation and test), the examples per split
(``train_examples``, ``valid_examples``, ``test_examples``) and the generator's ``seed``.

What a sequence holds: its input tokens, the target of every position (the pad id 0 where nothing is scored: no
answer of either task is ever 0), and one int32 array per meta key (``META_KEYS``: MQAR ``distance`` and ``pair``,
copy ``length`` and ``offset``; -1 off the answers), all as long as the sequence.

Stored as blocks: one webdataset sample holds up to ``BLOCK_ROWS`` consecutive sequences, because a tar member
costs the reader a header parse in Python's ``tarfile`` and a sequence is only tens of tokens: with one sample of
seven members per sequence, reading took longer than a small model's step. A block's members: ``keys.txt`` the
sequences' keys (one a line, ``{split}{index:08d}``), ``len.i32`` their lengths, and ``tgt.i32`` (tokens),
``ans.i32`` (answers) and one ``{name}.i32`` per meta key, each the block's sequences concatenated in that order.
The loader cuts a block back into its sequences as it reads the shard (``stream/memory_batches.py``), so
shuffling, bucketing, reader slots and resume positions all count sequences, not blocks.

A leaf of ``pipeline.data`` (numpy only, through ``memory_tasks.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.data.memory_tasks import check_copy, check_mqar, copy_seq_len, copy_vocab_size

MEMORY_TASKS = ("mqar", "copy")  # data.task values whose data is generated, not read from a corpus
TASK_KEYS = {
    "mqar": {"vocab_size": 8192, "n_pairs": 8, "seq_len": 128, "power_a": 0.01, "filler": "random"},
    "copy": {"alphabet_size": 26, "min_len": 1, "max_len": 50, "eval_min_len": 1, "eval_max_len": 60},
}
COMMON_KEYS = {"train_examples": 10000, "valid_examples": 1000, "test_examples": 1000, "seed": 0}
ANSWERS = "ans.i32"
TOKENS = "tgt.i32"
BLOCK_KEYS = "keys.txt"  # a block's sequence keys, one a line
BLOCK_LENGTHS = "len.i32"  # a block's sequence lengths
BLOCK_ROWS = 256  # sequences per block (at most; a shard's last block holds the rest)
META_KEYS = {"mqar": ("distance", "pair"), "copy": ("length", "offset")}
PAD_ID = 0  # = pipeline.data.tokenizer.PAD_ID and the generators' pad: the loss ignores it


def meta_member(name: str) -> str:
    """The sample member holding the meta array ``name``."""
    return f"{name}.i32"


def memory_spec(task: str, **keys: Any) -> dict[str, Any]:
    """The full spec of ``task``: defaults filled in, unknown keys and bad values one ValueError naming the key."""
    if task not in MEMORY_TASKS:
        raise ValueError(f"task={task!r}: a memory task is one of {', '.join(MEMORY_TASKS)}")
    allowed = {**TASK_KEYS[task], **COMMON_KEYS}
    for name in keys:
        if name not in allowed:
            raise ValueError(f"{task}: unknown key {name!r}; valid keys: {', '.join(allowed)}")
    spec = {"task": task, **allowed, **keys}
    check_spec(spec)
    return spec


def check_spec(spec: dict[str, Any]) -> None:
    """The generator's checks (ValueError '<task>.<key>=...') plus the split sizes and the seed."""
    task = spec["task"]
    if task == "mqar":
        check_mqar(spec["vocab_size"], spec["n_pairs"], spec["seq_len"], spec["power_a"], spec["filler"])
    else:
        check_copy(spec["min_len"], spec["max_len"], copy_seq_len(spec["max_len"]), spec["alphabet_size"])
        try:
            check_copy(spec["eval_min_len"], spec["eval_max_len"], seq_len(spec), spec["alphabet_size"])
        except ValueError as err:  # name the eval keys, not the train ones
            raise ValueError(re.sub(r"\b(min_len|max_len)\b", r"eval_\1", str(err))) from err
    for name in ("train_examples", "valid_examples", "test_examples"):
        value = spec[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{task}.{name}={value!r}: must be an int >= 1")
    if isinstance(spec["seed"], bool) or not isinstance(spec["seed"], int) or spec["seed"] < 0:
        raise ValueError(f"{task}.seed={spec['seed']!r}: must be an int >= 0")


def vocab_size(spec: dict[str, Any]) -> int:
    """Token ids the task uses: V for MQAR; pad, '$', '|', '.' and the alphabet for copy."""
    return int(spec["vocab_size"]) if spec["task"] == "mqar" else copy_vocab_size(spec["alphabet_size"])


def seq_len(spec: dict[str, Any]) -> int:
    """The longest sample of any split: L for MQAR; `$x|x.` of the longest string for copy."""
    if spec["task"] == "mqar":
        return int(spec["seq_len"])
    return copy_seq_len(max(spec["max_len"], spec["eval_max_len"]))


def spec_from_flags(task: str, pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` flags of ``pipeline data prepare`` -> the spec (values read as JSON: 8, 0.01, "zeros"
    or zeros)."""
    keys: dict[str, Any] = {}
    for text in pairs:
        name, sep, raw = text.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. n_pairs=8")
        try:
            keys[name] = json.loads(raw)
        except json.JSONDecodeError:
            keys[name] = raw
    return memory_spec(task, **keys)
