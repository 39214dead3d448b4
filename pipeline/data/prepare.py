"""Offline preparation: text pairs -> BPE tokenizer -> webdataset tar shards + ``manifest.json``.

Layout of ``out_dir``::

    tokenizer.json  manifest.json  {train,valid,test}/shard-000000.tar ...

Each sample holds ``__key__``, ``src.i32`` / ``tgt.i32`` (token ids, no BOS/EOS, as raw little-endian int32:
``np.frombuffer`` is ~10x cheaper than parsing an ``.npy`` header per sample) and ``src.txt`` / ``tgt.txt``
(the cleaned text, the BLEU reference). Pairs with more than ``max_len`` tokens on either side are
dropped (or truncated with ``overlong="truncate"``); both are counted in the manifest. The train split is
shuffled once with ``seed`` before sharding, so every shard mixes all books. ``limit`` (for quick runs) writes
at most ``limit`` pairs per split, counted after overlong ones are dropped, and trains the tokenizer on the
first ``limit`` (shuffled) train pairs only.

Everything is written into a sibling temp dir that is renamed onto ``out_dir`` only when complete, so a crash
never leaves a directory that looks prepared. A call with the same arguments as an existing manifest returns it
without redoing work, once every shard's hash has been checked (a damaged one is rebuilt, with a warning).
A split left empty (e.g. every pair longer than ``max_len``) is an error naming it and why.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import webdataset as wds
from rich.progress import Progress

from pipeline.data.corpus import SPLITS, CorpusSource, Example, load_splits, parse_source, sha256_file
from pipeline.data.tokenizer import SPECIAL_IDS, train_tokenizer
from pipeline.data.verify import (
    MANIFEST,
    ShardError,
    check_splits_not_empty,
    dataset_hash,
    has_shards,
    rebuild_hint,
    verify_prepared,
)

FORMAT_VERSION = 2
DEFAULT_CORPUS = "bible:4-l"


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
) -> dict:
    """Prepare ``source`` into ``out_dir`` and return the manifest (see the module docstring)."""
    source = parse_source(source)
    if max_len < 1 or shard_size < 1:
        raise ValueError(
            f"max_len and shard_size must be >= 1, got max_len={max_len}, shard_size={shard_size}"
        )
    if overlong not in ("drop", "truncate"):
        raise ValueError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    out_dir = Path(out_dir)
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
    _check_replaceable(out_dir, force)

    splits = load_splits(source)
    if not splits["train"]:
        raise ValueError(f"corpus {source.spec} has no training pairs")
    random.Random(seed).shuffle(splits["train"])
    tokenizer = train_tokenizer((text for _, s, t in splits["train"][:limit] for text in (s, t)), vocab_size)

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tokenizer.save(tmp / "tokenizer.json")
        manifest: dict = {
            "format_version": FORMAT_VERSION,
            "corpus": source.spec,
            "args": args,
            "vocab_size": tokenizer.vocab_size,
            "special_ids": dict(SPECIAL_IDS),
            "max_len": max_len,
            "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
            "splits": {},
        }
        with Progress(transient=True) as progress:
            for split in SPLITS:
                manifest["splits"][split] = _write_split(
                    tokenizer, splits[split], tmp, split, max_len, shard_size, overlong, limit, progress
                )
        check_splits_not_empty(manifest, f"the preparation of {out_dir}")
        manifest["dataset_hash"] = dataset_hash(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def ensure_prepared(
    data_dir: str | Path, corpus: str = DEFAULT_CORPUS, vocab_size: int = 8000, max_len: int = 128, **kwargs
) -> dict:
    """Return ``data_dir``'s manifest, preparing ``corpus`` there first if it holds none (used by ``make demo``).

    A manifest made with another corpus, vocab size or max length is an error rather than silently rebuilt, and
    so is a dir with shards but no manifest. The returned manifest has passed ``verify_prepared``.
    """
    data_dir = Path(data_dir)
    if not (data_dir / MANIFEST).is_file() and not (data_dir.is_dir() and has_shards(data_dir)):
        return prepare(corpus, data_dir, vocab_size=vocab_size, max_len=max_len, **kwargs)
    manifest = verify_prepared(data_dir)
    wanted = {"corpus": parse_source(corpus).spec, "vocab_size": vocab_size, "max_len": max_len}
    found = {
        "corpus": manifest["corpus"],
        "vocab_size": manifest["args"]["vocab_size"],
        "max_len": manifest["max_len"],
    }
    if wanted != found:
        raise ValueError(
            f"{data_dir} was prepared with {found}, but {wanted} was asked for: "
            "use another data dir or re-run `pipeline data prepare`"
        )
    return manifest


def read_manifest(data_dir: str | Path) -> dict:
    """Load ``DATA_DIR/manifest.json`` with an error that says how to make one."""
    path = Path(data_dir) / MANIFEST
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(
            f"data dir not found: {data_dir} (run `pipeline data prepare --out {data_dir}`)"
        )
    if not path.is_file() and has_shards(Path(data_dir)):
        raise FileNotFoundError(
            f"no {MANIFEST} in {data_dir}, but it holds shards: they cannot be verified without it; "
            f"{rebuild_hint(data_dir)}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST} in {data_dir}: not a prepared data dir (run `pipeline data prepare`)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exn:
        raise ValueError(f"corrupt manifest {path}: {exn}") from exn


def _write_split(tokenizer, examples: list[Example], root: Path, split: str, max_len: int, shard_size: int,
                 overlong: str, limit: int | None, progress: Progress) -> dict:  # fmt: skip
    """Tokenize and shard one split; returns its manifest entry."""
    (root / split).mkdir()
    stats = {"samples": 0, "src_tokens": 0, "tgt_tokens": 0, "dropped_overlong": 0, "truncated": 0,
             "pairs": len(examples)}  # fmt: skip
    task = progress.add_task(f"{split}: tokenize + write", total=len(examples))
    counts: list[int] = []  # samples per finished shard, recorded by ShardWriter's `post` hook
    writer = wds.ShardWriter(
        str(root / split / "shard-%06d.tar"),
        maxcount=shard_size,
        verbose=0,
        mtime=0,  # an int: reproducible shards with plain ustar headers (a float mtime adds pax headers)
        post=lambda _: counts.append(writer.count),
    )
    try:
        for start in range(0, len(examples), 4096):
            chunk = examples[start : start + 4096]
            src_ids = tokenizer.encode_batch([s for _, s, _ in chunk])
            tgt_ids = tokenizer.encode_batch([t for _, _, t in chunk])
            for (key, src, tgt), s_ids, t_ids in zip(chunk, src_ids, tgt_ids, strict=True):
                if max(len(s_ids), len(t_ids)) > max_len:
                    if overlong == "drop":
                        stats["dropped_overlong"] += 1
                        continue
                    stats["truncated"] += 1
                    s_ids, t_ids = s_ids[:max_len], t_ids[:max_len]
                if not s_ids or not t_ids:
                    continue
                writer.write({
                    "__key__": key,
                    "src.i32": np.asarray(s_ids, dtype="<i4").tobytes(),
                    "tgt.i32": np.asarray(t_ids, dtype="<i4").tobytes(),
                    "src.txt": src,
                    "tgt.txt": tgt,
                })  # fmt: skip
                stats["samples"] += 1
                stats["src_tokens"] += len(s_ids)
                stats["tgt_tokens"] += len(t_ids)
                if stats["samples"] == limit:
                    break
            progress.advance(task, len(chunk))
            if stats["samples"] == limit:
                break
    finally:
        writer.close()
    shards = sorted((root / split).glob("shard-*.tar"))
    if stats["samples"] == 0:  # ShardWriter opened one empty shard; an empty split lists none
        for shard in shards:
            shard.unlink()
        shards, counts = [], []
    stats["shards"] = [
        {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p, n in zip(shards, counts, strict=True)
    ]
    return stats


def _check_replaceable(out_dir: Path, force: bool) -> None:
    """Only an empty dir or an earlier prepared one may be replaced; never a user's unrelated folder.

    A prepared dir that lost its manifest is replaced only with ``force`` (its shards cannot be verified).
    """
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if out_dir.is_dir() and (out_dir / MANIFEST).is_file():
        return
    if out_dir.is_dir() and has_shards(out_dir) and _only_prepared_files(out_dir):
        if force:
            return
        raise FileExistsError(f"{out_dir} holds shards but no {MANIFEST}: {rebuild_hint(out_dir)}")
    raise FileExistsError(f"{out_dir} exists and is not a prepared data dir: refusing to overwrite it")


def _only_prepared_files(out_dir: Path) -> bool:
    """True if ``out_dir`` holds nothing but what ``prepare`` writes (so replacing it loses no user file)."""
    for entry in out_dir.iterdir():
        if entry.name in (MANIFEST, "tokenizer.json") and entry.is_file():
            continue
        if entry.name in SPLITS and entry.is_dir() and all(p.match("shard-*.tar") for p in entry.iterdir()):
            continue
        return False
    return True


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temp dir onto ``out_dir``; an older prepared dir is moved aside, then deleted."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline data prepare``."""
    src = parser.add_argument_group("corpus (default: the embedded bible, English WEB -> French Segond)")
    src.add_argument("--corpus", default=None, help=f"bible:SRC-TGT spec (default {DEFAULT_CORPUS})")
    src.add_argument("--src", type=Path, help="parallel text: source side, one sentence per line")
    src.add_argument("--tgt", type=Path, help="parallel text: target side, line-aligned with --src")
    src.add_argument(
        "--text", type=Path, help="plain text: each non-empty line is the target of the one before"
    )
    src.add_argument(
        "--valid-frac", type=float, default=0.05, help="user files: last-but-one block for valid"
    )
    src.add_argument("--test-frac", type=float, default=0.05, help="user files: last block for test")
    parser.add_argument("--out", type=Path, required=True, help="data dir to write")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-len", type=int, default=128, help="max tokens per side (BOS/EOS not counted)")
    parser.add_argument("--overlong", choices=("drop", "truncate"), default="drop")
    parser.add_argument("--shard-size", type=int, default=2000, help="samples per tar shard")
    parser.add_argument("--seed", type=int, default=0, help="train-split shuffle before sharding")
    parser.add_argument(
        "--limit", type=int, default=None, help="write at most N pairs per split (quick tests)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if an identical manifest exists")


def run_prepare(args: argparse.Namespace) -> int:
    """Entry point for ``pipeline data prepare``: bad input is reported on stderr with exit code 2."""
    try:
        if args.src is not None or args.tgt is not None or args.text is not None:
            if args.corpus is not None:
                raise ValueError("give either --corpus or --src/--tgt or --text, not both")
            source = CorpusSource(
                src=args.src,
                tgt=args.tgt,
                text=args.text,
                valid_frac=args.valid_frac,
                test_frac=args.test_frac,
            )
        else:
            source = parse_source(args.corpus or DEFAULT_CORPUS)
        manifest = prepare(source, args.out, vocab_size=args.vocab_size, max_len=args.max_len,
                           shard_size=args.shard_size, seed=args.seed, limit=args.limit, overlong=args.overlong,
                           force=args.force)  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}={manifest['splits'][s]['samples']}" for s in SPLITS)
    print(f"prepared {manifest['corpus']} in {args.out}: {counts}; vocab {manifest['vocab_size']}")
    return 0
