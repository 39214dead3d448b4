"""Known-truth memory tasks -> webdataset shards + ``manifest.json``, like every other task's data.

The task's spec (its keys, split sizes and seed) is ``memory_spec.py``'s; the run config builds it from
``data.mqar`` / ``data.copy`` / ``data.memory``, ``pipeline data prepare --task mqar --set KEY=VALUE`` from its
flags (``command.py``). The spec is the manifest's ``args`` and ``memory_task``, so a changed key is a mismatch,
not a reuse.

Each split comes from its own seed stream with content-disjoint examples (``memory_tasks.py``). Copy draws all
three splits at the width of the longest string any split may hold, so the split hash sees the same row for the
same string whatever split asks for it; each stored sequence is then cut to its own ``$x|x.`` (the loader buckets
by length). Sequences are stored in blocks of many (one tar sample each, read fast): see ``memory_spec.py``. ``tokenizer.json`` holds the task's symbol table (what each id
means), so the data dir verifies like a text one (``verify.py`` hashes it); there is no BPE to load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    ShardError,
    read_manifest,
    sha256_file,
    write_manifest,
)
from pipeline.data.memory_spec import (
    ANSWERS,
    BLOCK_KEYS,
    BLOCK_LENGTHS,
    BLOCK_ROWS,
    META_KEYS,
    PAD_ID,
    TOKENS,
    check_spec,
    meta_member,
    seq_len,
    vocab_size,
)
from pipeline.data.memory_tasks import IGNORE, LETTER0, TaskExamples, copy_seq_len, copy_task, mqar
from pipeline.data.prepare.fast_tar import FastShardWriter
from pipeline.data.prepare.output import check_replaceable, swap_in
from pipeline.data.stream.verify import verify_prepared
from pipeline.data.text import SPLITS

GENERATOR_SPLIT = {"train": "train", "valid": "validation", "test": "test"}  # loader split -> memory_tasks'


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
    """Shard one split: ``shard_size`` sequences a shard, in blocks of up to ``BLOCK_ROWS`` (``memory_spec.py``);
    returns its manifest entry (``samples`` count sequences, as the loader does)."""
    if bool((examples.targets[examples.mask] == PAD_ID).any()):
        raise ValueError(
            f"{task}: an answer is the pad id {PAD_ID}; it could not be told from an unscored position"
        )
    (root / split).mkdir()
    answers = np.where(examples.mask, examples.targets, PAD_ID).astype("<i4")
    tokens = examples.tokens.astype("<i4")
    if task == "copy":  # each sequence only as long as its `$x|x.`
        widths = copy_seq_len(examples.meta["length"].max(axis=1))
    else:
        widths = np.full(len(tokens), tokens.shape[1])
    columns = {TOKENS: tokens, ANSWERS: answers,
               **{meta_member(name): examples.meta[name].astype("<i4") for name in META_KEYS[task]}}  # fmt: skip
    n = len(tokens)
    per_shard = -(
        -shard_size // BLOCK_ROWS
    )  # every full shard has as many blocks, so shards end every shard_size
    writer = FastShardWriter(str(root / split / "shard-%06d.tar"), maxcount=per_shard)
    try:
        for shard_start in range(0, n, shard_size):
            shard_end = min(shard_start + shard_size, n)
            for lo in range(shard_start, shard_end, BLOCK_ROWS):
                rows = range(lo, min(lo + BLOCK_ROWS, shard_end))
                kept = (
                    np.arange(tokens.shape[1]) < widths[rows.start : rows.stop, None]
                )  # row-major: in order
                writer.write({
                    "__key__": f"{split}{lo:08d}",
                    BLOCK_KEYS: "\n".join(f"{split}{i:08d}" for i in rows),
                    BLOCK_LENGTHS: widths[rows.start : rows.stop].astype("<i4").tobytes(),
                    **{member: array[rows.start : rows.stop][kept].tobytes() for member, array in columns.items()},
                })  # fmt: skip
    finally:
        writer.close()
    counts = [min(shard_size, n - start) for start in range(0, n, shard_size)]
    return {
        "samples": n,
        "src_tokens": 0,
        "tgt_tokens": int(widths.sum()),
        "answers": int(examples.mask.sum()),
        "dropped_overlong": 0,
        "truncated": 0,
        "shards": [
            {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p, n in zip(writer.paths, counts, strict=True)
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
            if read_manifest(out_dir).get("args") == args:
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
        write_manifest(tmp, manifest, f"the preparation of {out_dir}")
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
