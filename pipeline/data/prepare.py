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
from collections.abc import Iterator
from pathlib import Path

from rich.progress import Progress

from pipeline.data.corpus import SPLITS, CorpusSource, load_splits, parse_source, sha256_file
from pipeline.data.lm import DEFAULT_LM_CORPUS, lm_records
from pipeline.data.passages import check_passage_len, join_passages, passage_lengths
from pipeline.data.shard_io import is_remote, join, read_bytes
from pipeline.data.shard_writer import tokenized
from pipeline.data.shard_writer import write_split as _write_split  # module-level: tests patch it
from pipeline.data.stream_prepare import (
    TOKENIZER_SAMPLE,
    count_and_sample,
    is_streamed,
    stream_records,
    train_sampled_tokenizer,
)
from pipeline.data.tokenizer import SPECIAL_IDS, TextTokenizer, train_tokenizer
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
TASKS = ("translation", "passages", "lm")


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
) -> dict:
    """Prepare ``source`` into ``out_dir`` and return the manifest (see the module docstring).

    ``task``: ``translation`` (one pair per verse or line), ``passages`` (consecutive verses of a chapter joined
    up to ``passage_len`` tokens a side, ``passages.py``; ``max_len`` is then ``passage_len``) or ``lm`` (windows
    of ``context`` tokens from monolingual text, ``lm.py``; ``max_len`` is then ``context``).
    ``stream``: None streams parallel files / TSV (``stream_prepare.py``); False forces the in-memory path (the
    reference the preparation benchmark compares against).
    """
    source = parse_source(source)
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
    if (
        task != "translation"
    ):  # translation manifests keep the keys they always had (existing dirs still match)
        args.update(task=task, passage_len=passage_len, context=context)
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

    if task == "lm":
        tokenizer, chunks, sizes, extra = lm_records(source, vocab_size, context, seed)
        records, drain = (lambda tmp: ((split, chunks[split]) for split in SPLITS)), False
    elif task == "translation" and is_streamed(source) and stream is not False:
        tokenizer, records, sizes, extra = _streamed_records(source, vocab_size, seed, limit)
        drain = True  # one pass over the input: what `limit` leaves of a split must still be read past
    else:
        tokenizer, chunks, sizes, extra = _pair_records(source, vocab_size, seed, limit, task, passage_len)
        records, drain = (lambda tmp: ((split, chunks[split]) for split in SPLITS)), False

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
            **extra,
        }
        with Progress(transient=True) as progress:
            for split, split_chunks in records(tmp):
                manifest["splits"][split] = {
                    **_write_split(
                        split_chunks,
                        sizes[split],
                        tmp,
                        split,
                        max_len,
                        shard_size,
                        overlong,
                        limit,
                        progress,
                        allow_empty_src=task == "lm",
                    ),  # fmt: skip
                    **extra.pop(f"{split}_stats", {}),
                }
                for _ in split_chunks if drain else ():
                    pass
        manifest["splits"] = {split: manifest["splits"][split] for split in SPLITS}
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
    task = kwargs.get("task", "translation")
    length = {"passages": kwargs.get("passage_len"), "lm": kwargs.get("context")}.get(task, max_len)
    wanted = {"corpus": parse_source(corpus).spec, "task": task, "vocab_size": vocab_size, "max_len": length}
    found = {
        "corpus": manifest["corpus"],
        "task": manifest.get("task", "translation"),
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
    """Load ``DATA_DIR/manifest.json`` with an error that says how to make one (a remote location is read too)."""
    if is_remote(data_dir):
        url = join(data_dir, MANIFEST)
        try:
            return json.loads(read_bytes(url))
        except json.JSONDecodeError as exn:
            raise ValueError(f"corrupt manifest {url}: {exn}") from exn
        except Exception as exn:
            raise FileNotFoundError(f"manifest unreadable: {url}: {type(exn).__name__}: {exn}") from exn
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


def _pair_records(source: CorpusSource, vocab_size: int, seed: int, limit: int | None, task: str,
                  passage_len: int | None) -> tuple[TextTokenizer, dict, dict, dict]:  # fmt: skip
    """Translation pairs (one per verse/line, or joined into passages): tokenizer, records and sizes per split."""
    splits = load_splits(source)
    if not splits["train"]:
        raise ValueError(f"corpus {source.spec} has no training pairs")
    ordered = list(splits["train"])
    random.Random(seed).shuffle(splits["train"])
    tokenizer = train_tokenizer((text for _, s, t in splits["train"][:limit] for text in (s, t)), vocab_size)
    extra: dict = {"task": task} if task != "translation" else {}
    if task == "passages":
        assert passage_len is not None
        extra["passage_len"] = passage_len
        for split in SPLITS:
            verses = ordered if split == "train" else splits[split]
            lengths = passage_lengths(tokenizer, verses)
            if split == "train":
                check_passage_len(verses, lengths, passage_len, source.spec)
            splits[split], dropped = join_passages(verses, lengths, passage_len)
            extra[f"{split}_stats"] = {"verses": len(verses), "verses_dropped_overlong": dropped}
        random.Random(seed).shuffle(splits["train"])
    records = {split: tokenized(tokenizer, splits[split]) for split in SPLITS}
    return tokenizer, records, {split: len(splits[split]) for split in SPLITS}, extra


def _streamed_records(source: CorpusSource, vocab_size: int, seed: int, limit: int | None) -> tuple:
    """Parallel files / TSV in bounded memory (``stream_prepare.py``): BPE on a sample, external shuffle."""
    sample = min(TOKENIZER_SAMPLE, limit or TOKENIZER_SAMPLE)
    bounds, texts, malformed = count_and_sample(source, seed, sample)
    tokenizer = train_sampled_tokenizer(texts, vocab_size, source.spec)
    sizes = {split: b - a for split, (a, b) in zip(SPLITS, bounds, strict=True)}
    extra = {"malformed": malformed.to_manifest(), "tokenizer_sample_pairs": len(texts) // 2}

    def records(tmp: Path) -> Iterator:
        return stream_records(source, tokenizer, bounds, seed, tmp / ".scratch")

    return tokenizer, records, sizes, extra


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
    src.add_argument(
        "--corpus",
        default=None,
        help=f"bible:SRC-TGT spec (default {DEFAULT_CORPUS}; --task lm: bible:CODE+CODE, default {DEFAULT_LM_CORPUS})",
    )
    src.add_argument(
        "--src",
        type=Path,
        help="parallel text: source side, one sentence per line (a file or a dir of files; .gz/.xz ok)",
    )
    src.add_argument("--tgt", type=Path, help="parallel text: target side, line-aligned with --src")
    src.add_argument(
        "--text", type=Path, help="plain text: each non-empty line is the target of the one before"
    )
    src.add_argument(
        "--tsv", type=Path, help="source<TAB>target per line (a file or a dir of files; .gz/.xz ok)"
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
    task = parser.add_argument_group("task (data.task)")
    task.add_argument("--task", choices=TASKS, default="translation",
                      help="translation: a pair per verse/line; passages: consecutive verses joined; lm: windows")  # fmt: skip
    task.add_argument(
        "--passage-len", type=int, default=None, help="passages: max tokens per side (e.g. 256)"
    )
    task.add_argument("--context", type=int, default=None, help="lm: tokens per window (e.g. 1024)")


def run_prepare(args: argparse.Namespace) -> int:
    """Entry point for ``pipeline data prepare``: bad input is reported on stderr with exit code 2."""
    try:
        if args.src is not None or args.tgt is not None or args.text is not None or args.tsv is not None:
            if args.corpus is not None:
                raise ValueError("give either --corpus or --src/--tgt, --tsv or --text, not both")
            source = CorpusSource(
                src=args.src,
                tgt=args.tgt,
                text=args.text,
                tsv=args.tsv,
                valid_frac=args.valid_frac,
                test_frac=args.test_frac,
            )
        else:
            default = DEFAULT_LM_CORPUS if args.task == "lm" else DEFAULT_CORPUS
            source = parse_source(args.corpus or default)
        manifest = prepare(source, args.out, vocab_size=args.vocab_size, max_len=args.max_len,
                           shard_size=args.shard_size, seed=args.seed, limit=args.limit, overlong=args.overlong,
                           force=args.force, task=args.task, passage_len=args.passage_len,
                           context=args.context)  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    bad = manifest.get("malformed", {})
    if bad.get("count"):
        print(f"warning: {bad['count']} malformed input lines skipped; first: {'; '.join(bad['first'][:5])}",
              file=sys.stderr)  # fmt: skip
    counts = ", ".join(f"{s}={manifest['splits'][s]['samples']}" for s in SPLITS)
    print(f"prepared {manifest['corpus']} in {args.out}: {counts}; vocab {manifest['vocab_size']}")
    return 0
