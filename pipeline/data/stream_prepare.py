"""Streaming preparation of parallel files (``--src/--tgt``, ``--tsv``, gzip/xz, directories) in bounded memory.

The in-memory path (``load_splits``) holds every pair, shuffles them and trains BPE on all of them: memory and
BPE time grow with the corpus (issue 19: 1.82 GB and ~2,000 pairs/s at 1.6M pairs). Here the input is read twice,
line by line, and nothing holds more than a bounded number of pairs:

1. *Count and sample.* One pass counts the usable pairs (for the contiguous train / valid / test blocks, exactly as
   the in-memory split computes them) and keeps a seeded reservoir sample of at most ``tokenizer_sample`` pairs;
   BPE is trained on the sample's train pairs only (never on held-out blocks).
2. *Tokenize and write.* A second pass encodes chunks of ``CHUNK`` pairs with the tokenizers library's
   ``encode_batch`` (parallel in Rust threads). Valid and test pairs go straight to their shards in corpus order
   (the blocks are contiguous, so held-out data never mixes with train). Train pairs are *scattered*: each goes to
   one of ``ceil(n_train / bucket_pairs)`` temporary bucket files chosen by a seeded RNG. Each bucket is then
   loaded alone, shuffled in memory and written out, bucket after bucket. Random scatter followed by an in-bucket
   shuffle is a uniformly random permutation of the whole train split (the classic external shuffle), so the train
   shards mix the whole corpus as the in-memory shuffle did, while memory is bounded by one bucket. (The loader
   adds its own per-epoch shard-order and buffer shuffle on top.)

Malformed lines (not UTF-8, a TSV line without one tab) are counted and the first ones listed with file and line
in the manifest's ``malformed`` entry. The bible corpus is small (31k verses) and keeps the in-memory path, so its
shards are unchanged.
"""

from __future__ import annotations

import math
import pickle
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.corpus import CorpusSource, _block_bounds
from pipeline.data.readers import Malformed, count_lines, expand, parallel_pairs, tsv_pairs
from pipeline.data.shard_writer import Record
from pipeline.data.tokenizer import TextTokenizer, train_tokenizer

CHUNK = 8192
TOKENIZER_SAMPLE = 50_000  # pairs (100k sentences, ~3M words): plenty for the merges of an 8k vocabulary
BUCKET_PAIRS = 50_000  # train pairs held in memory at once while shuffling


def is_streamed(source: CorpusSource) -> bool:
    """Parallel files and TSV stream; the bible and plain text (next-sentence) keep the in-memory path."""
    return source.bible is None and source.text is None


def pairs_of(source: CorpusSource, malformed: Malformed) -> Iterator[tuple[str, str, str]]:
    if source.tsv is not None:
        return tsv_pairs(source.tsv, malformed)
    assert source.src is not None and source.tgt is not None
    return parallel_pairs(source.src, source.tgt, malformed)


def check_aligned(source: CorpusSource) -> None:
    """Line-aligned inputs must have as many lines on both sides (counted by streaming, not loaded)."""
    if source.src is None or source.tgt is None:
        return
    n_src, n_tgt = count_lines(expand(source.src)), count_lines(expand(source.tgt))
    if n_src != n_tgt:
        raise ValueError(
            f"parallel files are not line-aligned: {source.src} has {n_src} lines, {source.tgt} has {n_tgt}"
        )


def count_and_sample(
    source: CorpusSource, seed: int, sample_size: int
) -> tuple[list[tuple[int, int]], list[str], Malformed]:
    """Pass 1: (train/valid/test bounds over pair indices, train texts for BPE, malformed lines)."""
    check_aligned(source)
    malformed = Malformed()
    rng = random.Random(f"{seed}-tokenizer-sample")
    reservoir: list[tuple[int, str, str]] = []
    n = 0
    for n, (_, s, t) in enumerate(pairs_of(source, malformed), start=1):
        if len(reservoir) < sample_size:
            reservoir.append((n - 1, s, t))
        else:
            j = rng.randrange(n)
            if j < sample_size:
                reservoir[j] = (n - 1, s, t)
    bounds = _block_bounds(n, source.valid_frac, source.test_frac)
    n_train = bounds[0][1]
    texts = [text for i, s, t in sorted(reservoir) if i < n_train for text in (s, t)]
    return bounds, texts, malformed


def stream_records(
    source: CorpusSource, tokenizer: TextTokenizer, bounds: list[tuple[int, int]], seed: int, scratch: Path,
    bucket_pairs: int | None = None,
) -> Iterator[tuple[str, Iterator[list[Record]]]]:  # fmt: skip
    """Pass 2: yields (split, its record chunks) for valid, test, then train (see the module docstring).

    Each split's chunks must be consumed before the next split is asked for (one pass over the input).
    """
    n_train = bounds[0][1]
    pairs = enumerate(pairs_of(source, Malformed()))  # malformed lines were counted in pass 1
    n_buckets = max(1, math.ceil(n_train / (bucket_pairs or BUCKET_PAIRS)))
    scratch.mkdir(parents=True, exist_ok=True)
    buckets = [(scratch / f"bucket-{b:05d}.pkl").open("wb") for b in range(n_buckets)]
    rng = random.Random(f"{seed}-scatter")
    try:
        for chunk in _encoded(pairs, tokenizer, n_train):
            for record in chunk:
                pickle.dump(record, buckets[rng.randrange(n_buckets)], protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for f in buckets:
            f.close()
    yield "valid", _encoded(pairs, tokenizer, bounds[1][1] - bounds[1][0])
    yield "test", _encoded(pairs, tokenizer, bounds[2][1] - bounds[2][0])
    yield "train", _shuffled_buckets(scratch, n_buckets, seed)


def _encoded(pairs: Iterator[tuple[int, tuple[str, str, str]]], tokenizer: TextTokenizer, n: int) -> Iterator[list[Record]]:  # fmt: skip
    """The next ``n`` pairs of ``pairs``, tokenized in chunks with ``encode_batch``."""
    left = n
    while left > 0:
        chunk = [pair for _, (_, pair) in zip(range(min(CHUNK, left)), pairs, strict=False)]
        if not chunk:
            return
        left -= len(chunk)
        src_ids = tokenizer.encode_batch([s for _, s, _ in chunk])
        tgt_ids = tokenizer.encode_batch([t for _, _, t in chunk])
        yield [
            (k, s, t, np.asarray(a, dtype="<i4"), np.asarray(b, dtype="<i4"))
            for (k, s, t), a, b in zip(chunk, src_ids, tgt_ids, strict=True)
        ]


def _shuffled_buckets(scratch: Path, n_buckets: int, seed: int) -> Iterator[list[Record]]:
    try:
        for b in range(n_buckets):
            path = scratch / f"bucket-{b:05d}.pkl"
            records: list[Record] = []
            with path.open("rb") as f:
                while True:
                    try:
                        records.append(pickle.load(f))
                    except EOFError:
                        break
            path.unlink()
            random.Random(f"{seed}-bucket-{b}").shuffle(records)
            for start in range(0, len(records), CHUNK):
                yield records[start : start + CHUNK]
            del records
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_sampled_tokenizer(texts: list[str], vocab_size: int, corpus: str) -> TextTokenizer:
    if not texts:
        raise ValueError(f"corpus {corpus} has no training pairs")
    return train_tokenizer(texts, vocab_size)
