"""Phase 1 of the streamed preparation (parallel files and TSV): one counting pass, BPE on a bounded sample, the plan.

The in-memory path (``sources/corpus.load_splits``) holds every pair, shuffles them and trains BPE on all of them:
memory and BPE time grow with the corpus (1.82 GB and ~2,000 pairs/s at 1.6M pairs). Here one pass counts the usable
pairs (for the contiguous train / valid / test blocks, exactly as the in-memory split computes them), notes the input
line of every ``CHECKPOINT``-th pair (where a range may start reading) and keeps a seeded reservoir sample of at
most ``TOKENIZER_SAMPLE`` pairs; BPE is trained on the sample's train pairs only (never on held-out blocks).
``plan.json`` and ``tokenizer.json`` go to a scratch dir inside the output's temporary dir; the encode phase
(``encode.py``) and the merge (``merge.py``) read them from there.

Malformed lines (not UTF-8, a TSV line without one tab) are counted in this pass and the first ones listed with
file and line in the manifest's ``malformed`` entry. The bible corpus is small (31k verses) and keeps the in-memory
path.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

from pipeline.data.prepare.output import SCRATCH
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.sources.readers import Malformed, count_lines, expand, parallel_pairs, tsv_pairs
from pipeline.data.text import block_bounds
from pipeline.data.tokenizer import train_tokenizer

TOKENIZER_SAMPLE = 50_000  # pairs (100k sentences, ~3M words): plenty for the merges of an 8k vocabulary
BUCKET_PAIRS = 50_000  # train pairs held in memory at once while shuffling
CHECKPOINT = 1024  # pass 1 notes the input line of every CHECKPOINT-th pair: a range starts reading there
MIN_RANGE_PAIRS = 10_000  # locally, no range smaller than this: starting a worker costs ~1 s (~4k pairs)
PLAN = "plan.json"


def is_streamed(source: CorpusSource) -> bool:
    """Parallel files and TSV stream; the bible and plain text (next-sentence) keep the in-memory path."""
    return source.src is not None or source.tsv is not None


def pairs_of(source: CorpusSource, malformed: Malformed, start: int = 0) -> Iterator[tuple[str, str, str]]:
    """(key, source, target) from input line ``start`` on."""
    if source.tsv is not None:
        return tsv_pairs(source.tsv, malformed, start)
    assert source.src is not None and source.tgt is not None
    return parallel_pairs(source.src, source.tgt, malformed, start)


def check_aligned(source: CorpusSource) -> None:
    """Line-aligned inputs must have as many lines on both sides (counted by streaming, not loaded)."""
    if source.src is None or source.tgt is None:
        return
    n_src, n_tgt = count_lines(expand(source.src)), count_lines(expand(source.tgt))
    if n_src != n_tgt:
        raise ValueError(
            f"parallel files are not line-aligned: {source.src} has {n_src} lines, {source.tgt} has {n_tgt}"
        )


def make_plan(
    source: CorpusSource, scratch: Path, seed: int, sample_size: int, vocab_size: int, n_ranges: int,
    settings: dict, shrink: bool = False,
) -> dict:  # fmt: skip
    """Phase 1: count, checkpoint, sample, train the BPE; write ``scratch/plan.json`` and the tokenizer.

    ``settings`` is kept for the merge (``build.py``'s arguments and manifest fields). ``shrink``: at most one
    range per ``MIN_RANGE_PAIRS`` pairs (local workers); otherwise exactly ``n_ranges`` (SLURM array tasks).
    """
    if n_ranges < 1:
        raise ValueError(f"the number of ranges must be >= 1, got {n_ranges}")
    check_aligned(source)
    malformed = Malformed()
    rng = random.Random(f"{seed}-tokenizer-sample")
    reservoir: list[tuple[int, str, str]] = []
    checkpoints: list[int] = []
    n = 0
    for n, (key, s, t) in enumerate(pairs_of(source, malformed), start=1):
        if (n - 1) % CHECKPOINT == 0:
            checkpoints.append(int(key[1:]))  # keys are "l<input line index>" (readers.py)
        if len(reservoir) < sample_size:
            reservoir.append((n - 1, s, t))
        else:
            j = rng.randrange(n)
            if j < sample_size:
                reservoir[j] = (n - 1, s, t)
    bounds = block_bounds(n, source.valid_frac, source.test_frac)
    n_train = bounds[0][1]
    if shrink:
        n_ranges = max(1, min(n_ranges, n // MIN_RANGE_PAIRS))
    texts = [text for i, s, t in sorted(reservoir) if i < n_train for text in (s, t)]
    if not texts:
        raise ValueError(f"corpus {source.spec} has no training pairs")
    tokenizer = train_tokenizer(texts, vocab_size)
    scratch.mkdir(parents=True, exist_ok=True)
    tokenizer.save(scratch / "tokenizer.json")
    plan = {
        "source": source_fields(source), "seed": seed, "pairs": n,
        "bounds": bounds, "n_buckets": max(1, math.ceil(n_train / BUCKET_PAIRS)), "n_ranges": n_ranges,
        "checkpoints": checkpoints, "settings": settings,
        "extra": {"malformed": malformed.to_manifest(), "tokenizer_sample_pairs": len(texts) // 2},
    }  # fmt: skip
    tmp = scratch / f"{PLAN}.tmp"
    tmp.write_text(json.dumps(plan) + "\n")
    tmp.replace(scratch / PLAN)
    return plan


def plan_streamed(source: CorpusSource, work: Path, vocab_size: int, seed: int, limit: int | None,
                  n_ranges: int, settings: dict, local: bool = False) -> dict:  # fmt: skip
    """Phase 1 into ``work``'s scratch dir: BPE on at most ``TOKENIZER_SAMPLE`` pairs (``limit`` if smaller).

    ``local``: fewer ranges than ``n_ranges`` on a small input (a worker process is not worth a few pairs).
    """
    sample = min(TOKENIZER_SAMPLE, limit or TOKENIZER_SAMPLE)
    return make_plan(source, work / SCRATCH, seed, sample, vocab_size, n_ranges, settings, shrink=local)


def read_plan(scratch: Path) -> dict:
    path = Path(scratch) / PLAN
    if not path.is_file():
        raise FileNotFoundError(f"no preparation plan {path}: run `pipeline data prepare ... --slurm` first")
    return json.loads(path.read_text())


def source_fields(source: CorpusSource) -> dict:
    """A streamed source as JSON (absolute paths: the jobs that read it may start elsewhere)."""
    paths = {k: None if v is None else str(Path(v).resolve()) for k, v in
             (("src", source.src), ("tgt", source.tgt), ("tsv", source.tsv))}  # fmt: skip
    return {**paths, "valid_frac": source.valid_frac, "test_frac": source.test_frac}


def source_from_fields(fields: dict) -> CorpusSource:
    paths = {k: None if fields[k] is None else Path(fields[k]) for k in ("src", "tgt", "tsv")}
    return CorpusSource(**paths, valid_frac=fields["valid_frac"], test_frac=fields["test_frac"])


def plan_source(plan: dict) -> CorpusSource:
    return source_from_fields(plan["source"])


def range_bounds(plan: dict, index: int) -> tuple[int, int]:
    """Pairs [a, b) of range ``index``: ``n_ranges`` contiguous, near-equal ranges."""
    n, k = plan["pairs"], plan["n_ranges"]
    return index * n // k, (index + 1) * n // k
