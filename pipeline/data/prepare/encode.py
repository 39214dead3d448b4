"""Phase 2 of the streamed preparation: each input range tokenized into its own part files, in any process.

The pairs are cut into ``n_ranges`` contiguous ranges [a, b); each is read from its checkpoint (``plan.py``),
tokenized with ``encode_batch`` (source and target sides in one call) in chunks of ``CHUNK``, and written to its own
part files (``range_parts.py``): valid and test pairs in corpus order, train pairs *scattered* into
``ceil(n_train / BUCKET_PAIRS)`` buckets. The bucket of pair i is a pure function of (seed, i) (``bucket_of``: a
generator seeded by (seed, i // DRAW_BLOCK)), never one RNG stream over the corpus, so any split into ranges, any
number of workers, gives the same buckets. A range writes into a temporary dir renamed into place when complete: a
crashed task is simply rerun. Locally the ranges run in ``workers`` processes (``encode_ranges``); with
``pipeline data prepare --slurm`` each is an array task (``--encode-range R``).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.data.prepare.plan import CHECKPOINT, PLAN, pairs_of, plan_source, range_bounds, read_plan
from pipeline.data.prepare.range_parts import PartBuffer
from pipeline.data.sources.readers import Malformed
from pipeline.data.tokenizer import load_tokenizer

CHUNK = 8192
DRAW_BLOCK = 4096  # bucket draws come in blocks of this many pairs, each block from its own seeded generator
SEGMENT_PAIRS = 100_000  # a range task flushes its buffered records to part files every this many pairs
TRAIN, VALID, TEST = "train", "valid", "test"  # part file names: train-BBBBB-SSSSS, valid-SSSSS, test-SSSSS


def bucket_of(seed: int, start: int, stop: int, n_buckets: int) -> np.ndarray:
    """Train buckets of pairs [start, stop): pair i's is draw i % DRAW_BLOCK of a generator seeded (seed, block)."""
    out = []
    for block in range(start // DRAW_BLOCK, (stop - 1) // DRAW_BLOCK + 1 if stop > start else 0):
        draws = np.random.default_rng([seed % 2**63, block]).integers(n_buckets, size=DRAW_BLOCK)
        lo, hi = max(start - block * DRAW_BLOCK, 0), min(stop - block * DRAW_BLOCK, DRAW_BLOCK)
        out.append(draws[lo:hi])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def range_dir(scratch: Path, index: int) -> Path:
    return Path(scratch) / "parts" / f"range-{index:05d}"


def encode_range(scratch: Path, index: int) -> Path:
    """Phase 2 for range ``index``: its part files, written to a temp dir renamed onto ``range_dir`` when done."""
    scratch = Path(scratch)
    plan = read_plan(scratch)
    if not 0 <= index < plan["n_ranges"]:
        raise ValueError(f"range {index} out of 0..{plan['n_ranges'] - 1} in {scratch / PLAN}")
    a, b = range_bounds(plan, index)
    final = range_dir(scratch, index)
    tmp = final.with_name(f"{final.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_train, valid_end = plan["bounds"][0][1], plan["bounds"][1][1]
    tokenizer = load_tokenizer(scratch / "tokenizer.json")
    checkpoint = a // CHECKPOINT
    p = checkpoint * CHECKPOINT
    pairs: Iterator[tuple[str, str, str]] = iter(())
    if a < b:
        pairs = islice(
            pairs_of(plan_source(plan), Malformed(), plan["checkpoints"][checkpoint]), a - p, b - p
        )
    p = a
    buffers: dict[int, PartBuffer] = defaultdict(PartBuffer)  # bucket, or -1 valid, -2 test
    segment = buffered = 0
    while chunk := list(islice(pairs, CHUNK)):
        m = len(chunk)
        ids = tokenizer.encode_batch([s for _, s, _ in chunk] + [t for _, _, t in chunk])
        buckets = bucket_of(plan["seed"], p, min(p + m, n_train), plan["n_buckets"]).tolist()
        for j, (key, s, t) in enumerate(chunk):
            i = p + j
            where = buckets[j] if i < n_train else -1 if i < valid_end else -2
            buffers[where].add(key, s, t, ids[j], ids[m + j])
        p += m
        buffered += m
        if buffered >= SEGMENT_PAIRS:
            _flush(buffers, tmp, segment)
            segment, buffered = segment + 1, 0
    _flush(buffers, tmp, segment)
    if p != b:
        raise ValueError(f"range {index}: expected pairs {a}..{b} but the input ended at {p}: "
                         f"has it changed since the plan ({scratch / PLAN}) was made?")  # fmt: skip
    shutil.rmtree(final, ignore_errors=True)  # a rerun replaces the earlier attempt's parts
    tmp.rename(final)
    return final


def _flush(buffers: dict[int, PartBuffer], out: Path, segment: int) -> None:
    for where, buf in buffers.items():
        if len(buf):
            name = {-1: VALID, -2: TEST}.get(where) or f"{TRAIN}-{where:05d}"
            buf.save(out / f"{name}-{segment:05d}.npy")
    buffers.clear()


def _single_threaded() -> None:
    """Worker processes already use every core: the tokenizers library's own threads would oversubscribe."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def encode_ranges(scratch: Path, workers: int) -> None:
    """Phase 2 locally: every range of the plan, in ``workers`` processes (in this process when 1)."""
    n = read_plan(scratch)["n_ranges"]
    if workers <= 1 or n == 1:
        for index in range(n):
            encode_range(scratch, index)
        return
    # spawn, not fork: this process has run the tokenizers library's thread pool (BPE training)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, n), mp_context=context, initializer=_single_threaded) as pool:
        list(pool.map(encode_range, [scratch] * n, range(n)))
