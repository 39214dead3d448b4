"""``pipeline data prepare``: the one argument parser of preparation, and the command that runs it.

The flags name everything that shapes the prepared data (the corpus, ``--vocab-size``, ``--max-len``, the task...);
the hidden stage flags (``--plan``, ``--encode-range R``, ``--merge``) run one phase of a preparation split across
jobs (``staged.py``), as the SLURM jobs do. ``pipeline/slurm/data_prepare.py`` adds ``--slurm`` (submitting those
jobs) on top of this parser; the data layer itself never imports SLURM code. ``--task mqar|copy`` generates a
memory task from its ``--set KEY=VALUE`` keys instead (``memory_shards.py``): no corpus, tokenizer or ranges.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.data.manifest import ShardError
from pipeline.data.memory_spec import MEMORY_TASKS, spec_from_flags
from pipeline.data.prepare import staged
from pipeline.data.prepare.build import TASKS, prepare
from pipeline.data.prepare.encode import encode_range
from pipeline.data.prepare.memory_shards import prepare_memory
from pipeline.data.prepare.merge import merge_prepared
from pipeline.data.prepare.output import SCRATCH
from pipeline.data.sources.bible import DEFAULT_CORPUS, DEFAULT_LM_CORPUS
from pipeline.data.sources.corpus import CorpusSource, parse_source
from pipeline.data.text import SPLITS


def path_arg(text: str) -> Path:
    """argparse type of a path: an empty one would silently mean the working directory ('.')."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


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
        type=path_arg,
        help="parallel text: source side, one sentence per line (a file or a dir of files; .gz/.xz ok)",
    )
    src.add_argument("--tgt", type=path_arg, help="parallel text: target side, line-aligned with --src")
    src.add_argument(
        "--text", type=path_arg, help="plain text: each non-empty line is the target of the one before"
    )
    src.add_argument(
        "--tsv", type=path_arg, help="source<TAB>target per line (a file or a dir of files; .gz/.xz ok)"
    )
    src.add_argument(
        "--docs",
        type=path_arg,
        help="--task lm: a directory with one document per file (or train/, valid/ or validation/, test/ "
        "subdirectories: the corpus's own split), held out whole; each held-out document is a bootstrap cluster",
    )
    src.add_argument(
        "--valid-frac",
        type=float,
        default=0.05,
        help="user files: last-but-one block for valid (--docs: the share of documents held out)",
    )
    src.add_argument("--test-frac", type=float, default=0.05, help="user files: last block for test")
    parser.add_argument("--out", type=path_arg, required=True, help="data dir to write")
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
                      help="mqar/copy: a task key, e.g. n_pairs=8 (pipeline/data/memory_spec.py; repeat)")  # fmt: skip
    task.add_argument(
        "--passage-len", type=int, default=None, help="passages: max tokens per side (e.g. 256)"
    )
    task.add_argument("--context", type=int, default=None, help="lm: tokens per window (e.g. 1024)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes encoding parallel files / TSV (the shards do not depend on it)")  # fmt: skip
    # One phase of a preparation split across jobs (slurm/data_prepare.sbatch), on the out dir's staged temp dir:
    parser.add_argument("--plan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--encode-range", type=int, metavar="R", help=argparse.SUPPRESS)
    parser.add_argument("--merge", action="store_true", help=argparse.SUPPRESS)


def source_from_args(args: argparse.Namespace) -> CorpusSource:
    """The corpus ``--corpus`` / ``--src --tgt`` / ``--tsv`` / ``--text`` / ``--docs`` name (the bible by
    default)."""
    files = (args.src, args.tgt, args.text, args.tsv, args.docs)
    if any(f is not None for f in files):
        if args.corpus is not None:
            raise ValueError("give either --corpus or --src/--tgt, --tsv, --text or --docs, not both")
        return CorpusSource(src=args.src, tgt=args.tgt, text=args.text, tsv=args.tsv, docs=args.docs,
                            valid_frac=args.valid_frac, test_frac=args.test_frac)  # fmt: skip
    return parse_source(args.corpus or (DEFAULT_LM_CORPUS if args.task == "lm" else DEFAULT_CORPUS))


def run_prepare(args: argparse.Namespace) -> int:
    """Entry point for ``pipeline data prepare``: bad input is reported on stderr with exit code 2."""
    if args.plan or args.encode_range is not None or args.merge:
        return run_stage(args)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if args.task in MEMORY_TASKS:  # generated from a seed: no corpus, tokenizer or ranges
            spec = spec_from_flags(args.task, args.task_keys)
            manifest = prepare_memory(args.out, spec, shard_size=args.shard_size, force=args.force)
            return _report(manifest, args.out)
        if args.task_keys:
            raise ValueError(f"--set is for --task mqar or copy, not --task {args.task}")
        manifest = prepare(source_from_args(args), args.out, vocab_size=args.vocab_size, max_len=args.max_len,
                           shard_size=args.shard_size, seed=args.seed, limit=args.limit, overlong=args.overlong,
                           force=args.force, task=args.task, passage_len=args.passage_len, context=args.context,
                           workers=args.workers)  # fmt: skip
    except (OSError, ValueError, ShardError) as exn:  # bad input; each message names the file or option
        print(f"pipeline data prepare: error: {exn}", file=sys.stderr)
        return 2
    bad = manifest.get("malformed", {})
    if bad.get("count"):
        print(f"warning: {bad['count']} malformed input lines skipped; first: {'; '.join(bad['first'][:5])}",
              file=sys.stderr)  # fmt: skip
    return _report(manifest, args.out)


def _report(manifest: dict, out: Path) -> int:
    """The one line a finished preparation prints; status 0."""
    counts = ", ".join(f"{s}={manifest['splits'][s]['samples']}" for s in SPLITS)
    print(f"prepared {manifest['corpus']} in {out}: {counts}; vocab {manifest['vocab_size']}; "
          f"dataset hash {manifest['dataset_hash']}")  # fmt: skip
    return 0


def run_stage(args: argparse.Namespace) -> int:
    """One phase of a staged preparation (``--plan``, ``--encode-range R`` or ``--merge``), on ``--out``'s temp dir.

    ``--merge`` renders the samples in ``--workers`` processes (a SLURM job passes its own cores).
    """
    work = staged.staged_dir(args.out)
    stage = "--plan" if args.plan else "--merge" if args.merge else f"--encode-range {args.encode_range}"
    try:
        if args.plan:
            plan = staged.plan_request(args.out)
            print(f"planned {plan['pairs']:,} pairs in {plan['n_ranges']} ranges in {work}")
        elif args.encode_range is not None:
            print(f"wrote {encode_range(work / SCRATCH, args.encode_range)}")
        else:
            manifest = merge_prepared(work, args.workers)
            print(f"prepared {manifest['corpus']} in {args.out}; dataset hash {manifest['dataset_hash']}")
    except (OSError, ValueError, ShardError) as err:
        print(f"pipeline data prepare: error: {stage}: {err}", file=sys.stderr)
        return 2
    return 0
