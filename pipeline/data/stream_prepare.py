"""Streaming preparation of parallel files (``--src/--tgt``, ``--tsv``, gzip/xz, directories) in bounded memory,
split into three phases so that the middle one can run in many processes or SLURM array tasks.

The in-memory path (``load_splits``) holds every pair, shuffles them and trains BPE on all of them: memory and
BPE time grow with the corpus (issue 19: 1.82 GB and ~2,000 pairs/s at 1.6M pairs). Here:

1. *Plan* (one process, ``make_plan``). One pass counts the usable pairs (for the contiguous train / valid / test
   blocks, exactly as the in-memory split computes them), notes the input line of every ``CHECKPOINT``-th pair
   (where a range may start reading) and keeps a seeded reservoir sample of at most ``tokenizer_sample`` pairs;
   BPE is trained on the sample's train pairs only (never on held-out blocks). ``plan.json`` and
   ``tokenizer.json`` go to a scratch dir inside the output's temporary dir.
2. *Encode ranges* (``encode_range``, any number of processes). The pairs are cut into ``n_ranges`` contiguous
   ranges [a, b); each is read from its checkpoint, tokenized with ``encode_batch`` (source and target sides in
   one call) in chunks of ``CHUNK``, and written to its own part files (``range_parts.py``): valid and test pairs
   in corpus order, train pairs *scattered* into ``ceil(n_train / BUCKET_PAIRS)`` buckets. The bucket of pair i
   is a pure function of (seed, i) (``bucket_of``: a generator seeded by (seed, i // DRAW_BLOCK)), never one RNG
   stream over the corpus, so any split into ranges, any number of workers, gives the same buckets. A range
   writes into a temporary dir renamed into place when complete: a crashed task is simply rerun.
3. *Merge* (``merge_units``, then ``merge_split.write_units``: one process writes the shards, workers render the
   samples). Valid / test parts are read in range order; each bucket's parts are concatenated in range order
   (= pair order), shuffled with the bucket's seed and written out, bucket after bucket. Random scatter followed by an in-bucket shuffle is a uniformly random permutation of the whole train
   split (the classic external shuffle), so train shards mix the whole corpus while memory is bounded by one
   bucket. (The loader adds its own per-epoch shard-order and buffer shuffle.) A missing range is an error naming
   it.

Locally phase 2 runs in ``workers`` processes (``encode_ranges``); ``pipeline data prepare --slurm`` runs it as a
job array (``staged_prepare.py``, ``pipeline/slurm/data_prepare.py``). The shards are byte-identical either way.

Cost and ceiling (CPU time per pair, one thread, ``python -m benchmarks.prepare_profile --pairs 50000``, measured
on a shared 2-core machine): ``encode_batch`` 170-255 us, reading + cleaning 21-29 us, part files 9-14 us, the
merge's rendering 39 us (in workers, ``merge_split.py``) and appending 16.5 us (serial). Encoding dominates, so
throughput is bounded by cores / encode cost: ~10k pairs/s on 2 cores (4-5x the pre-streaming 2,000-2,400 pairs/s),
less the serial plan pass and merge appending (~40 us per pair). More cores (``workers``, SLURM ranges) are the only
way past it.

Malformed lines (not UTF-8, a TSV line without one tab) are counted in pass 1 and the first ones listed with file
and line in the manifest's ``malformed`` entry. The bible corpus is small (31k verses) and keeps the in-memory
path, so its shards are unchanged.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import shutil
import socket
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.data.corpus import CorpusSource, _block_bounds
from pipeline.data.range_parts import PartBuffer
from pipeline.data.readers import Malformed, count_lines, expand, parallel_pairs, tsv_pairs
from pipeline.data.tokenizer import load_tokenizer, train_tokenizer

CHUNK = 8192
TOKENIZER_SAMPLE = 50_000  # pairs (100k sentences, ~3M words): plenty for the merges of an 8k vocabulary
BUCKET_PAIRS = 50_000  # train pairs held in memory at once while shuffling
CHECKPOINT = 1024  # pass 1 notes the input line of every CHECKPOINT-th pair: a range starts reading there
DRAW_BLOCK = 4096  # bucket draws come in blocks of this many pairs, each block from its own seeded generator
MIN_RANGE_PAIRS = 10_000  # locally, no range smaller than this: starting a worker costs ~1 s (~4k pairs)
SEGMENT_PAIRS = 100_000  # a range task flushes its buffered records to part files every this many pairs
SCRATCH = ".scratch"
PLAN = "plan.json"
TRAIN, VALID, TEST = "train", "valid", "test"


def is_streamed(source: CorpusSource) -> bool:
    """Parallel files and TSV stream; the bible and plain text (next-sentence) keep the in-memory path."""
    return source.bible is None and source.text is None


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

    ``settings`` is kept for the merge (``prepare.py``'s arguments and manifest fields). ``shrink``: at most one
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
    bounds = _block_bounds(n, source.valid_frac, source.test_frac)
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


def part_files(scratch: Path, plan: dict) -> dict[str, list[Path]]:
    """Part files by name (``valid``, ``test``, ``train-BBBBB``), in range then segment order.

    Raises ValueError naming the first range whose parts are missing (its task has not finished).
    """
    out: dict[str, list[Path]] = defaultdict(list)
    for index in range(plan["n_ranges"]):
        folder = range_dir(scratch, index)
        if not folder.is_dir():
            out_dir = plan["settings"].get("out_dir", "OUT")
            raise ValueError(f"range {index} of {plan['n_ranges']} has no parts in {folder} (its encode task did "
                             f"not finish): rerun it with `pipeline data prepare --out {out_dir} --encode-range "
                             f"{index}`, then the merge")  # fmt: skip
        for path in sorted(folder.glob("*.npy")):
            out[path.stem.rsplit("-", 1)[0]].append(path)
    return out


def merge_units(scratch: Path, plan: dict) -> list[tuple[str, list]]:
    """Phase 3's input, split by split: valid and test part files in range order; the train buckets in order, each
    with the seed its records are shuffled with (``merge_split.py`` renders and writes them)."""
    parts = part_files(scratch, plan)
    held_out = [(split, [([path], None) for path in parts.get(split, [])]) for split in (VALID, TEST)]
    train = [
        (parts.get(f"{TRAIN}-{b:05d}", []), f"{plan['seed']}-bucket-{b}") for b in range(plan["n_buckets"])
    ]
    return [*held_out, (TRAIN, train)]
