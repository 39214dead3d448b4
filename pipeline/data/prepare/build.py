"""Offline preparation: text pairs -> BPE tokenizer -> webdataset tar shards + ``manifest.json`` (``manifest.py``).

Each sample holds ``__key__``, ``src.i32`` / ``tgt.i32`` (token ids, no BOS/EOS, as raw little-endian int32:
``np.frombuffer`` is ~10x cheaper than parsing an ``.npy`` header per sample) and ``src.txt`` / ``tgt.txt``
(the cleaned text, the BLEU reference). Pairs with more than ``max_len`` tokens on either side are
dropped (or truncated with ``overlong="truncate"``); both are counted in the manifest. The train split is
shuffled once with ``seed`` before sharding, so every shard mixes all books. ``limit`` (for quick runs) writes
at most ``limit`` pairs per split, counted after overlong ones are dropped, and trains the tokenizer on the
first ``limit`` (shuffled) train pairs only.

Everything is written into a sibling temp dir that is renamed onto ``out_dir`` only when complete, so a crash
never leaves a directory that looks prepared (``output.py``). A call with the same arguments as an existing
manifest returns it without redoing work, once every shard's hash has been checked (a damaged one is rebuilt, with
a warning). A split left empty (e.g. every pair longer than ``max_len``) is an error naming it and why.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pipeline.data.manifest import FORMAT_VERSION, MANIFEST, ShardError, has_shards, read_manifest
from pipeline.data.prepare.encode import encode_ranges
from pipeline.data.prepare.merge import merge_prepared
from pipeline.data.prepare.output import SCRATCH, check_replaceable, write_prepared
from pipeline.data.prepare.plan import is_streamed, plan_streamed
from pipeline.data.sources.bible import DEFAULT_CORPUS
from pipeline.data.sources.corpus import CorpusSource, parse_source
from pipeline.data.sources.lm import lm_records
from pipeline.data.sources.pairs import pair_records
from pipeline.data.stream.verify import verify_prepared
from pipeline.data.text import SPLITS

# read from a corpus; the memory tasks (mqar, copy) are generated instead, by memory_shards.py
TASKS = ("translation", "passages", "lm")
MIN_VOCAB = 8  # the 4 special tokens and a few merges: below this BPE cannot encode a corpus
MAX_TOKEN_ID = 2**31 - 1  # shards store token ids as int32


def prepare(
    source: str | CorpusSource,
    out_dir: str | Path,
    vocab_size: int = 8000,
    max_len: int = 128,
    shard_size: int = 2000,
    seed: int = 0,
    limit: int | None = None,
    overlong: str = "drop",
    force: bool = False,
    task: str = "translation",
    passage_len: int | None = None,
    context: int | None = None,
    stream: bool | None = None,
    workers: int = 1,
) -> dict:
    """Prepare ``source`` into ``out_dir`` and return the manifest (see the module docstring).

    ``task``: ``translation`` (one pair per verse or line), ``passages`` (consecutive verses of a chapter joined
    up to ``passage_len`` tokens a side, ``sources/passages.py``; ``max_len`` is then ``passage_len``) or ``lm``
    (windows of ``context`` tokens from monolingual text, ``sources/lm.py``; ``max_len`` is then ``context``).
    ``stream``: None streams parallel files / TSV (``plan.py``, ``encode.py``, ``merge.py``); False forces the in-memory path (the
    reference the preparation benchmark compares against). ``workers``: processes encoding the streamed input's
    ranges (the shards do not depend on it).
    """
    source = parse_source(source)
    max_len, args = checked_args(source, vocab_size, max_len, shard_size, seed, limit, overlong, task,
                                 passage_len, context)  # fmt: skip
    out_dir = Path(out_dir)
    if not force and (out_dir / MANIFEST).is_file():
        try:
            existing = read_manifest(out_dir)
        except ValueError:  # unreadable manifest: rebuild
            existing = {}
        if existing.get("args") == args:
            try:
                return verify_prepared(out_dir, hash_shards=True)
            except (OSError, ValueError, ShardError) as exn:
                print(f"warning: rebuilding {out_dir}: {exn}", file=sys.stderr)
    check_replaceable(out_dir, force)
    settings = {"out_dir": str(out_dir), "args": args, "corpus": source.spec, "max_len": max_len,
                "shard_size": shard_size, "overlong": overlong, "limit": limit, "task": task, "force": force}  # fmt: skip

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if task == "translation" and is_streamed(source) and stream is not False:
            plan_streamed(source, tmp, vocab_size, seed, limit, max(1, workers), settings, local=True)
            encode_ranges(tmp / SCRATCH, workers)
            return merge_prepared(tmp, workers)
        if task == "lm":
            tokenizer, chunks, sizes, extra = lm_records(source, vocab_size, context, seed)
        else:
            tokenizer, chunks, sizes, extra = pair_records(source, vocab_size, seed, limit, task, passage_len)
        records = ((split, chunks[split]) for split in SPLITS)
        return write_prepared(tmp, tokenizer, records, sizes, extra, settings, drain=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checked_args(source: CorpusSource, vocab_size: int, max_len: int, shard_size: int, seed: int,
                 limit: int | None, overlong: str, task: str, passage_len: int | None,
                 context: int | None) -> tuple[int, dict]:  # fmt: skip
    """Check the options (one clear error each); return the effective max_len and the manifest's ``args``."""
    if task not in TASKS:
        raise ValueError(f"data.task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "passages":
        if passage_len is None:
            raise ValueError("data.task=passages needs data.passage_len (tokens per passage side, e.g. 256)")
        max_len = passage_len
    if task == "lm":
        if context is None:
            raise ValueError("data.task=lm needs data.context (tokens per window, e.g. 1024)")
        max_len = context
    if max_len < 1 or shard_size < 1:
        raise ValueError(
            f"max_len and shard_size must be >= 1, got max_len={max_len}, shard_size={shard_size}"
        )
    if overlong not in ("drop", "truncate"):
        raise ValueError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    if not MIN_VOCAB <= vocab_size <= MAX_TOKEN_ID:
        raise ValueError(
            f"vocab_size must be in [{MIN_VOCAB}, {MAX_TOKEN_ID}] (ids are stored as int32), got {vocab_size}"
        )
    if max_len > MAX_TOKEN_ID or shard_size > MAX_TOKEN_ID:
        raise ValueError(f"max_len and shard_size must be <= {MAX_TOKEN_ID}, got {max_len} and {shard_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 pair per split (omit it for no limit), got {limit}")
    args = {
        "corpus": source.describe(),
        "vocab_size": vocab_size,
        "max_len": max_len,
        "shard_size": shard_size,
        "seed": seed,
        "limit": limit,
        "overlong": overlong,
        "format_version": FORMAT_VERSION,
    }
    if (
        task != "translation"
    ):  # translation manifests keep the keys they always had (existing dirs still match)
        args.update(task=task, passage_len=passage_len, context=context)
    return max_len, args


def ensure_prepared(
    data_dir: str | Path, corpus: str = DEFAULT_CORPUS, vocab_size: int = 8000, max_len: int = 128, **kwargs
) -> dict:
    """Return ``data_dir``'s manifest, preparing ``corpus`` there first if it holds none (a run's ``data.dir``).

    A prepared dir is reused only if its manifest records the keys asked for (``reuse_mismatch``): one that
    differs, e.g. ``data.limit``, is an error naming it, never silently reused or rebuilt; so is a dir with shards
    but no manifest. The returned manifest has passed ``verify_prepared``.
    """
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file() and not (data_dir.is_dir() and has_shards(data_dir)):
        return prepare(corpus, data_dir, vocab_size=vocab_size, max_len=max_len, **kwargs)
    manifest = verify_prepared(data_dir)
    problem = reuse_mismatch(manifest, corpus=corpus, vocab_size=vocab_size, max_len=max_len, **kwargs)
    if problem:
        raise ValueError(
            f"{data_dir} was prepared with {problem}: delete {data_dir} to prepare it again with these keys, "
            "or point data.dir elsewhere"
        )
    return manifest


# The keys that shape prepared data, by their run-config names (others by their ``prepare`` argument names).
_CONFIG_KEYS = {"task": "data.task", "corpus": "data.corpus", "vocab_size": "data.vocab_size",
                "max_len": "data.max_len", "passage_len": "data.passage_len", "context": "data.context",
                "limit": "data.limit"}  # fmt: skip


def reuse_mismatch(manifest: dict, corpus: str, vocab_size: int, max_len: int, **kwargs: object) -> str:
    """'' if ``manifest`` was prepared with the keys asked for, else what differs (found, then asked for).

    The corpus is compared by its spec (the files need not be at hand to reuse their shards); ``limit`` None and 0
    both mean all pairs; ``shard_size``, ``seed`` and ``overlong`` only when given (a run config has no such keys).
    """
    args = manifest.get("args", {})
    task = kwargs.get("task", "translation")
    length_key = {"passages": "passage_len", "lm": "context"}.get(str(task), "max_len")
    wanted = {"task": task, "corpus": parse_source(corpus).spec, "vocab_size": vocab_size,
              length_key: kwargs.get(length_key, max_len), "limit": kwargs.get("limit") or None}  # fmt: skip
    found = {"task": manifest.get("task", "translation"), "corpus": manifest.get("corpus"),
             "vocab_size": args.get("vocab_size"), length_key: manifest.get("max_len"),
             "limit": args.get("limit") or None}  # fmt: skip
    if wanted["task"] != found["task"]:
        del wanted[length_key], found[length_key]  # another task's length means something else
    for key in ("shard_size", "seed", "overlong"):
        if key in kwargs:
            wanted[key], found[key] = kwargs[key], args.get(key)
    differ = [key for key in wanted if wanted[key] != found[key]]
    if not differ:
        return ""

    def shown(key: str, value: object) -> str:
        return "0 (all pairs)" if key == "limit" and value is None else str(value)

    def keys(values: dict) -> str:
        return ", ".join(f"{_CONFIG_KEYS.get(k, k)}={shown(k, values[k])}" for k in differ)

    return f"{keys(found)}, not the {keys(wanted)} asked for"
