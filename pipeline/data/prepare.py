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
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.progress import Progress

from pipeline.data.corpus import SPLITS, CorpusSource, parse_source, sha256_file
from pipeline.data.lm import DEFAULT_LM_CORPUS, lm_records
from pipeline.data.memory_batches import MEMORY_TASKS
from pipeline.data.merge_split import write_units
from pipeline.data.out_dir import check_replaceable, swap_in
from pipeline.data.pair_records import pair_records
from pipeline.data.shard_io import is_remote, join, read_bytes
from pipeline.data.shard_writer import write_split as _write_split  # module-level: tests patch it
from pipeline.data.stream_prepare import (
    SCRATCH,
    TOKENIZER_SAMPLE,
    encode_ranges,
    is_streamed,
    make_plan,
    merge_units,
    part_files,
    read_plan,
)
from pipeline.data.tokenizer import SPECIAL_IDS, TextTokenizer, load_tokenizer
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
    workers: int = 1,
) -> dict:
    """Prepare ``source`` into ``out_dir`` and return the manifest (see the module docstring).

    ``task``: ``translation`` (one pair per verse or line), ``passages`` (consecutive verses of a chapter joined
    up to ``passage_len`` tokens a side, ``passages.py``; ``max_len`` is then ``passage_len``) or ``lm`` (windows
    of ``context`` tokens from monolingual text, ``lm.py``; ``max_len`` is then ``context``).
    ``stream``: None streams parallel files / TSV (``stream_prepare.py``); False forces the in-memory path (the
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
        return _write_prepared(tmp, tokenizer, records, sizes, extra, settings, drain=False)
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


def _write_prepared(tmp: Path, tokenizer: TextTokenizer, records: Iterable[tuple[str, Iterable]], sizes: dict,
                    extra: dict, settings: dict, drain: bool = False, workers: int | None = None) -> dict:  # fmt: skip
    """Shard every split into ``tmp``, write the manifest, and rename ``tmp`` onto ``settings["out_dir"]``.

    ``records``: (split, its record chunks), or with ``workers`` (the streamed merge) (split, its units, rendered
    in ``workers`` processes: ``merge_split.py``). ``drain``: the chunks come from one pass over the input, so what
    ``limit`` leaves of a split is read past.
    """
    limit = settings["limit"]
    tokenizer.save(tmp / "tokenizer.json")
    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "corpus": settings["corpus"],
        "args": settings["args"],
        "vocab_size": tokenizer.vocab_size,
        "special_ids": dict(SPECIAL_IDS),
        "max_len": settings["max_len"],
        "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
        "splits": {},
        **extra,
    }
    with Progress(transient=True) as progress:
        for split, split_chunks in records:
            shape = (sizes[split], tmp, split, settings["max_len"], settings["shard_size"], settings["overlong"],
                     limit, progress)  # fmt: skip
            manifest["splits"][split] = {
                **(write_units(split_chunks, *shape, workers=workers) if workers is not None else
                   _write_split(split_chunks, *shape, allow_empty_src=settings["task"] == "lm")),
                **extra.pop(f"{split}_stats", {}),
            }  # fmt: skip
            for _ in split_chunks if drain else ():
                pass
    manifest["splits"] = {split: manifest["splits"][split] for split in SPLITS}
    out_dir = Path(settings["out_dir"])
    check_splits_not_empty(manifest, f"the preparation of {out_dir}")
    manifest["dataset_hash"] = dataset_hash(manifest)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(tmp / SCRATCH, ignore_errors=True)
    swap_in(tmp, out_dir)
    return manifest


def plan_streamed(source: CorpusSource, work: Path, vocab_size: int, seed: int, limit: int | None,
                  n_ranges: int, settings: dict, local: bool = False) -> dict:  # fmt: skip
    """Phase 1 of the streamed path (``stream_prepare.py``): BPE on a bounded sample, the plan in ``work``.

    ``local``: fewer ranges than ``n_ranges`` on a small input (a worker process is not worth a few pairs).
    """
    sample = min(TOKENIZER_SAMPLE, limit or TOKENIZER_SAMPLE)
    return make_plan(source, work / SCRATCH, seed, sample, vocab_size, n_ranges, settings, shrink=local)


def merge_prepared(work: str | Path, workers: int = 1) -> dict:
    """Phase 3: every range's parts -> shards + manifest, renamed onto the planned out dir; returns the manifest.

    ``workers``: processes rendering the samples (the shards do not depend on it). A rerun after a failed merge
    starts over (the parts are kept until the manifest is written).
    """
    work = Path(work)
    plan = read_plan(work / SCRATCH)
    part_files(work / SCRATCH, plan)  # a missing range is an error before anything is written
    settings = plan["settings"]
    check_replaceable(
        Path(settings["out_dir"]), settings.get("force", False)
    )  # it may have changed since the plan
    for split in SPLITS:
        shutil.rmtree(work / split, ignore_errors=True)
    tokenizer = load_tokenizer(work / SCRATCH / "tokenizer.json")
    sizes = {split: b - a for split, (a, b) in zip(SPLITS, plan["bounds"], strict=True)}
    units = merge_units(work / SCRATCH, plan)
    return _write_prepared(
        work, tokenizer, units, sizes, dict(plan["extra"]), settings, workers=max(1, workers)
    )


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
    task.add_argument("--task", choices=TASKS + MEMORY_TASKS, default="translation",
                      help="translation: a pair per verse/line; passages: consecutive verses joined; lm: windows; "
                      "mqar, copy: generated memory tasks (keys with --set)")  # fmt: skip
    task.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="task_keys",
                      help="mqar/copy: a task key, e.g. n_pairs=8 (pipeline/data/memory_shards.py; repeat)")  # fmt: skip
    task.add_argument(
        "--passage-len", type=int, default=None, help="passages: max tokens per side (e.g. 256)"
    )
    task.add_argument("--context", type=int, default=None, help="lm: tokens per window (e.g. 1024)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes encoding parallel files / TSV (the shards do not depend on it)")  # fmt: skip


def source_from_args(args: argparse.Namespace) -> CorpusSource:
    """The corpus ``--corpus`` / ``--src --tgt`` / ``--tsv`` / ``--text`` name (the bible by default)."""
    if args.src is not None or args.tgt is not None or args.text is not None or args.tsv is not None:
        if args.corpus is not None:
            raise ValueError("give either --corpus or --src/--tgt, --tsv or --text, not both")
        return CorpusSource(src=args.src, tgt=args.tgt, text=args.text, tsv=args.tsv, valid_frac=args.valid_frac,
                            test_frac=args.test_frac)  # fmt: skip
    return parse_source(args.corpus or (DEFAULT_LM_CORPUS if args.task == "lm" else DEFAULT_CORPUS))


def run_prepare(args: argparse.Namespace) -> int:
    """Entry point for ``pipeline data prepare``: bad input is reported on stderr with exit code 2."""
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if args.task in MEMORY_TASKS:  # generated by pipeline/data/memory_shards.py (run_memory_prepare)
            raise ValueError(
                f"--task {args.task} is prepared by `pipeline data prepare`, not this entry point"
            )
        if args.task_keys:
            raise ValueError(f"--set is for --task mqar or copy, not --task {args.task}")
        manifest = prepare(source_from_args(args), args.out, vocab_size=args.vocab_size, max_len=args.max_len,
                           shard_size=args.shard_size, seed=args.seed, limit=args.limit, overlong=args.overlong,
                           force=args.force, task=args.task, passage_len=args.passage_len, context=args.context,
                           workers=args.workers)  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    bad = manifest.get("malformed", {})
    if bad.get("count"):
        print(f"warning: {bad['count']} malformed input lines skipped; first: {'; '.join(bad['first'][:5])}",
              file=sys.stderr)  # fmt: skip
    counts = ", ".join(f"{s}={manifest['splits'][s]['samples']}" for s in SPLITS)
    print(f"prepared {manifest['corpus']} in {args.out}: {counts}; vocab {manifest['vocab_size']}; "
          f"dataset hash {manifest['dataset_hash']}")  # fmt: skip
    return 0
