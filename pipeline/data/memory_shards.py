"""Known-truth memory tasks (issue 31) -> webdataset shards + ``manifest.json``, like every other task's data.

A task is a plain dict, its *spec* (``memory_spec``): ``task`` (mqar or copy), the generator's keys (MQAR:
``vocab_size``, ``n_pairs``, ``seq_len``, ``power_a``, ``filler``; copy: ``alphabet_size``, ``min_len``,
``max_len`` for training and ``eval_min_len``, ``eval_max_len`` for validation and test), the examples per split
(``train_examples``, ``valid_examples``, ``test_examples``) and the generator's ``seed``. The run config builds it
from ``data.mqar`` / ``data.copy`` / ``data.memory``; ``pipeline data prepare --task mqar --set KEY=VALUE`` from
its flags. The spec is the manifest's ``args`` and ``memory_task``, so a changed key is a mismatch, not a reuse.

Each split comes from its own seed stream with content-disjoint examples (``memory_tasks.py``). Copy draws all
three splits at the width of the longest string any split may hold, so the split hash sees the same row for the
same string whatever split asks for it; each stored sample is then cut to its own ``$x|x.`` (the loader buckets
by length). Samples: see ``memory_batches.py``. ``tokenizer.json`` holds the task's symbol table (what each id
means), so the data dir verifies like a text one (``verify.py`` hashes it); there is no BPE to load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.corpus import SPLITS, sha256_file
from pipeline.data.fast_tar import FastShardWriter
from pipeline.data.memory_batches import ANSWERS, MEMORY_TASKS, META_KEYS, PAD_ID, meta_member
from pipeline.data.memory_tasks import (
    IGNORE,
    LETTER0,
    TaskExamples,
    check_copy,
    check_mqar,
    copy_seq_len,
    copy_task,
    copy_vocab_size,
    mqar,
)
from pipeline.data.out_dir import check_replaceable, swap_in
from pipeline.data.verify import MANIFEST, ShardError, dataset_hash, verify_prepared

FORMAT_VERSION = (
    2  # = prepare.FORMAT_VERSION (verify.py checks it); not imported: prepare imports this module
)
TASK_KEYS = {
    "mqar": {"vocab_size": 8192, "n_pairs": 8, "seq_len": 128, "power_a": 0.01, "filler": "random"},
    "copy": {"alphabet_size": 26, "min_len": 1, "max_len": 50, "eval_min_len": 1, "eval_max_len": 60},
}
COMMON_KEYS = {"train_examples": 10000, "valid_examples": 1000, "test_examples": 1000, "seed": 0}
GENERATOR_SPLIT = {"train": "train", "valid": "validation", "test": "test"}  # loader split -> memory_tasks'


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


def generate(spec: dict[str, Any], split: str) -> TaskExamples:
    """The examples of one split (``train``, ``valid`` or ``test``), a pure function of the spec."""
    n, gen_split = spec[f"{split}_examples"], GENERATOR_SPLIT[split]
    if spec["task"] == "mqar":
        return mqar(n, vocab_size=spec["vocab_size"], n_pairs=spec["n_pairs"], seq_len=spec["seq_len"],
                    seed=spec["seed"], split=gen_split, power_a=spec["power_a"], filler=spec["filler"])  # fmt: skip
    lo, hi = (
        (spec["min_len"], spec["max_len"])
        if split == "train"
        else (spec["eval_min_len"], spec["eval_max_len"])
    )
    return copy_task(n, min_len=lo, max_len=hi, seq_len=seq_len(spec), seed=spec["seed"], split=gen_split,
                     alphabet_size=spec["alphabet_size"])  # fmt: skip


def symbol_table(spec: dict[str, Any]) -> dict[str, Any]:
    """What each id means (``tokenizer.json`` of a memory task's data dir)."""
    if spec["task"] == "mqar":
        half = spec["vocab_size"] // 2
        return {"task": "mqar", "keys": [1, half - 1], "values": [half, spec["vocab_size"] - 1],
                "filler": spec["filler"], "pad": PAD_ID}  # fmt: skip
    letters = "".join(chr(ord("a") + i) if i < 26 else "?" for i in range(spec["alphabet_size"]))
    return {"task": "copy", "ids": {"<pad>": 0, "$": 1, "|": 2, ".": 3}, "letters_from": LETTER0,
            "letters": letters}  # fmt: skip


def _write_split(
    examples: TaskExamples, task: str, root: Path, split: str, shard_size: int
) -> dict[str, Any]:
    """Shard one split: tokens, answers (IGNORE -> pad) and meta per sample; returns its manifest entry."""
    if bool((examples.targets[examples.mask] == PAD_ID).any()):
        raise ValueError(
            f"{task}: an answer is the pad id {PAD_ID}; it could not be told from an unscored position"
        )
    (root / split).mkdir()
    answers = np.where(examples.mask, examples.targets, PAD_ID).astype("<i4")
    tokens = examples.tokens.astype("<i4")
    if task == "copy":  # each sample only as long as its `$x|x.`
        widths = copy_seq_len(examples.meta["length"].max(axis=1))
    else:
        widths = np.full(len(tokens), tokens.shape[1])
    meta = {name: examples.meta[name].astype("<i4") for name in META_KEYS[task]}
    writer = FastShardWriter(str(root / split / "shard-%06d.tar"), maxcount=shard_size)
    try:
        for i, width in enumerate(widths.tolist()):
            writer.write({
                "__key__": f"{split}{i:08d}",
                "src.i32": b"",
                "tgt.i32": tokens[i, :width].tobytes(),
                ANSWERS: answers[i, :width].tobytes(),
                **{meta_member(name): values[i, :width].tobytes() for name, values in meta.items()},
                "src.txt": "",
                "tgt.txt": "",
            })  # fmt: skip
    finally:
        writer.close()
    return {
        "samples": len(tokens),
        "src_tokens": 0,
        "tgt_tokens": int(widths.sum()),
        "answers": int(examples.mask.sum()),
        "dropped_overlong": 0,
        "truncated": 0,
        "shards": [
            {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p, n in zip(writer.paths, writer.counts, strict=True)
        ],
    }


def describe(spec: dict[str, Any]) -> str:
    """The manifest's ``corpus``: the task and its keys in one line."""
    keys = ",".join(f"{k}={v}" for k, v in spec.items() if k != "task")
    return f"{spec['task']}:{keys}"


def prepare_memory(
    out_dir: str | Path, spec: dict[str, Any], shard_size: int = 2000, force: bool = False
) -> dict:
    """Generate every split of ``spec`` into ``out_dir`` (written to a temp dir, renamed when whole); returns the
    manifest. An existing preparation of the same spec is verified and returned as it is."""
    check_spec(spec)
    out_dir = Path(out_dir)
    args = {"memory_task": spec, "shard_size": shard_size, "format_version": FORMAT_VERSION}
    if not force and (out_dir / MANIFEST).is_file():
        try:
            if json.loads((out_dir / MANIFEST).read_text()).get("args") == args:
                return verify_prepared(out_dir, hash_shards=True)
        except (OSError, ValueError, ShardError):
            pass  # unreadable or damaged: rebuilt below
    check_replaceable(out_dir, force)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "tokenizer.json").write_text(json.dumps(symbol_table(spec), indent=2) + "\n")
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "corpus": describe(spec),
            "args": args,
            "task": spec["task"],
            "memory_task": spec,
            "meta_keys": list(META_KEYS[spec["task"]]),
            "vocab_size": vocab_size(spec),
            "special_ids": {"<pad>": PAD_ID},
            "max_len": seq_len(spec),
            "ignore_index": IGNORE,
            "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
            "splits": {
                split: _write_split(generate(spec, split), spec["task"], tmp, split, shard_size)
                for split in SPLITS
            },  # fmt: skip
        }
        manifest["dataset_hash"] = dataset_hash(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def ensure_memory_prepared(data_dir: str | Path, spec: dict[str, Any]) -> dict:
    """``data_dir``'s manifest, generating it first if there is none; a dir made from another spec (or another
    task, or text) is an error naming the keys that differ, not silently rebuilt."""
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file():
        return prepare_memory(data_dir, spec)
    manifest = verify_prepared(data_dir)
    found = manifest.get("memory_task")
    if found != spec:
        if found is None:
            why = f"it holds data.task={manifest.get('task', 'translation')} data ({manifest.get('corpus')})"
        else:
            why = "; ".join(f"{k}: {found.get(k)!r} -> {spec.get(k)!r}"
                            for k in sorted({*spec, *found}) if found.get(k) != spec.get(k))  # fmt: skip
        raise ValueError(
            f"{data_dir} was prepared for another memory task ({why}): use another data.dir or delete it"
        )
    return manifest


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


def run_memory_prepare(task: str, flags: list[str], out: Path, shard_size: int, force: bool) -> int:
    """``pipeline data prepare --task mqar|copy --set KEY=VALUE ...``: bad input one line on stderr, status 2."""
    import sys

    try:
        manifest = prepare_memory(out, spec_from_flags(task, flags), shard_size=shard_size, force=force)
    except (FileExistsError, ValueError) as err:
        print(f"pipeline data prepare: error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}={manifest['splits'][s]['samples']}" for s in SPLITS)
    print(f"prepared {manifest['corpus']} in {out}: {counts}; vocab {manifest['vocab_size']}; "
          f"dataset hash {manifest['dataset_hash']}")  # fmt: skip
    return 0
