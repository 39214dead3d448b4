"""Phase 3 of the streamed preparation with the per-record work spread over processes.

Writing a split one record at a time costs ~30 us of CPU per pair (``benchmarks/prepare_profile.py``: tar headers,
encoding, ids to bytes), all in the one merge process: at cluster scale that serial step would dominate. But a
sample's tar members do not depend on where it lands in a shard, so each *unit* (a train bucket, shuffled with its
seed, or a held-out part file) is rendered in a worker (``render_unit``: the overlong rule, then
``fast_tar.render_sample``), and this process only appends the rendered bytes in unit order, counting exactly as
``shard_writer.write_split`` does (overlong drops, truncations, ``limit``), so the shards and the split's manifest
entry are the ones ``write_split`` writes from the same records (a unit test compares them).
At most ``workers + 1`` units are in flight, so memory stays bounded by a few rendered buckets.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import Progress

from pipeline.data.corpus import sha256_file
from pipeline.data.fast_tar import FastShardWriter, render_sample
from pipeline.data.range_parts import load_part

Unit = tuple[
    list[Path], "str | None"
]  # part files, in order; the seed to shuffle their records with, or None
WRITE, DROPPED, TRUNCATED, SKIPPED, TRUNCATED_SKIPPED = range(5)


def render_unit(unit: Unit, max_len: int, overlong: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes, np.ndarray]:  # fmt: skip
    """(kind, src tokens, tgt tokens per record; the rendered samples of those written, joined; their sizes)."""
    paths, seed = unit
    records = [record for path in paths for record in load_part(path)]
    if seed is not None:
        random.Random(seed).shuffle(records)
    kinds = np.zeros(len(records), dtype=np.int8)
    lengths = np.zeros((2, len(records)), dtype=np.int64)
    rendered: list[bytes] = []
    for i, (key, src, tgt, s_ids, t_ids) in enumerate(records):
        kind = WRITE
        if max(len(s_ids), len(t_ids)) > max_len:
            if overlong == "drop":
                kinds[i] = DROPPED
                continue
            kind, s_ids, t_ids = TRUNCATED, s_ids[:max_len], t_ids[:max_len]
        if not len(s_ids) or not len(t_ids):
            kinds[i] = SKIPPED if kind == WRITE else TRUNCATED_SKIPPED
            continue
        kinds[i], lengths[0, i], lengths[1, i] = kind, len(s_ids), len(t_ids)
        rendered.append(render_sample({"__key__": key, "src.i32": np.asarray(s_ids, dtype="<i4").tobytes(),
                                       "tgt.i32": np.asarray(t_ids, dtype="<i4").tobytes(), "src.txt": src,
                                       "tgt.txt": tgt}))  # fmt: skip
    sizes = np.fromiter(map(len, rendered), dtype=np.int64, count=len(rendered))
    return kinds, lengths[0], lengths[1], b"".join(rendered), sizes


def _rendered(units: Iterable[Unit], max_len: int, overlong: str, workers: int) -> Iterator[tuple]:
    """``render_unit`` of each unit, in order; in ``workers`` processes (here when 1), a bounded window ahead."""
    if workers <= 1:
        for unit in units:
            yield render_unit(unit, max_len, overlong)
        return
    context = multiprocessing.get_context("spawn")  # this process has run the tokenizers library's threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        window: deque[Future] = deque()
        for unit in units:
            window.append(pool.submit(render_unit, unit, max_len, overlong))
            if len(window) > workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def write_units(units: list[Unit], n_pairs: int, root: Path, split: str, max_len: int, shard_size: int,
                overlong: str, limit: int | None, progress: Progress, workers: int = 1) -> dict:  # fmt: skip
    """Shard one split from its units; returns its manifest entry (the same as ``write_split``'s)."""
    (root / split).mkdir()
    stats = {"samples": 0, "src_tokens": 0, "tgt_tokens": 0, "dropped_overlong": 0, "truncated": 0,
             "pairs": n_pairs}  # fmt: skip
    task = progress.add_task(f"{split}: write", total=n_pairs)
    writer = FastShardWriter(str(root / split / "shard-%06d.tar"), maxcount=shard_size)
    try:
        for kinds, src_len, tgt_len, blob, sizes in _rendered(units, max_len, overlong, workers):
            offset = written = 0
            for i, kind in enumerate(kinds.tolist()):
                if kind == DROPPED:
                    stats["dropped_overlong"] += 1
                    continue
                stats["truncated"] += kind in (TRUNCATED, TRUNCATED_SKIPPED)
                if kind in (SKIPPED, TRUNCATED_SKIPPED):
                    continue
                size = int(sizes[written])
                writer.write_rendered(blob[offset : offset + size])
                offset, written = offset + size, written + 1
                stats["samples"] += 1
                stats["src_tokens"] += int(src_len[i])
                stats["tgt_tokens"] += int(tgt_len[i])
                if stats["samples"] == limit:
                    break
            progress.advance(task, len(kinds))
            if stats["samples"] == limit:
                break
    finally:
        writer.close()
    stats["shards"] = [
        {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p, n in zip(writer.paths, writer.counts, strict=True)
    ]
    return stats
