"""Phase 3 of the streamed preparation with the per-record work spread over processes.

Writing a split one record at a time (``shard_writer.write_split``) costs ~40 us of CPU per pair
(``benchmarks/prepare_profile.py``: tar headers, text encoding, ids to bytes), all in the one merge process: on a
cluster, where the ranges encode in parallel, that serial step would dominate. But a sample's tar members do not
depend on where it lands in a shard, so each *unit* (a train bucket, shuffled with its seed, or a held-out part
file) is rendered in a worker (``render_unit``: the overlong rule, then ``fast_tar.render_sample``) into a file,
and this process only copies those bytes into the shards in unit order, in blocks, counting exactly as
``write_split`` does (overlong drops, truncations, ``limit``): the shards and the split's manifest entry are
``write_split``'s for the same records (a unit test compares them). Left serial: copying and hashing the shards
(~4 kB a sample with tar padding). Rendered units go through files, not the pool's pipe, so no process holds more
than one bucket's records; with one worker the units' records go straight to ``write_split``.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import count
from pathlib import Path

import numpy as np
from rich.progress import Progress

from pipeline.data.manifest import sha256_file
from pipeline.data.prepare.fast_tar import FastShardWriter, render_sample
from pipeline.data.prepare.range_parts import load_part
from pipeline.data.prepare.shard_writer import write_split
from pipeline.data.text import Record

Unit = tuple[
    list[Path], "str | None"
]  # part files, in order; the seed to shuffle their records with, or None
WRITE, DROPPED, TRUNCATED, SKIPPED, TRUNCATED_SKIPPED = range(5)


def render_unit(unit: Unit, max_len: int, overlong: str, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Render the unit's samples into ``out``; return (kind, src tokens, tgt tokens per record; written sizes).

    The samples go to a file, not back through the pool's pipe, so no process holds a rendered bucket (~4 kB a
    sample with tar padding: 200 MB for 50k pairs).
    """
    paths, seed = unit
    records = [record for path in paths for record in load_part(path)]
    if seed is not None:
        random.Random(seed).shuffle(records)
    kinds = np.zeros(len(records), dtype=np.int8)
    lengths = np.zeros((2, len(records)), dtype=np.int64)
    sizes: list[int] = []
    with out.open("wb") as f:
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
            sample = render_sample({"__key__": key, "src.i32": np.asarray(s_ids, dtype="<i4").tobytes(),
                                    "tgt.i32": np.asarray(t_ids, dtype="<i4").tobytes(), "src.txt": src,
                                    "tgt.txt": tgt})  # fmt: skip
            f.write(sample)
            sizes.append(len(sample))
    return kinds, lengths[0], lengths[1], np.asarray(sizes, dtype=np.int64)


def _records(units: Iterable[Unit]) -> Iterator[list[Record]]:
    for paths, seed in units:
        records = [record for path in paths for record in load_part(path)]
        if seed is not None:
            random.Random(seed).shuffle(records)
        yield records


def _rendered(units: Iterable[Unit], max_len: int, overlong: str, workers: int, tmp: Path) -> Iterator[tuple]:
    """(``render_unit``'s result, its file) for each unit, in order, from ``workers`` processes at most
    ``workers + 1`` units ahead."""
    outs = (tmp / f"unit-{i:06d}.bin" for i in count())
    context = multiprocessing.get_context("spawn")  # this process has run the tokenizers library's threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        window: deque[tuple[Future, Path]] = deque()
        for unit, out in zip(units, outs):  # noqa: B905
            window.append((pool.submit(render_unit, unit, max_len, overlong, out), out))
            if len(window) > workers:
                future, path = window.popleft()
                yield future.result(), path
        while window:
            future, path = window.popleft()
            yield future.result(), path


def write_units(units: list[Unit], n_pairs: int, root: Path, split: str, max_len: int, shard_size: int,
                overlong: str, limit: int | None, progress: Progress, workers: int = 1) -> dict:  # fmt: skip
    """Shard one split from its units; returns its manifest entry (the same as ``write_split``'s).

    With one worker this is ``write_split`` over the units' records (no rendering through files: cheaper when
    nothing runs in parallel).
    """
    if workers <= 1:
        return write_split(
            _records(units), n_pairs, root, split, max_len, shard_size, overlong, limit, progress
        )
    (root / split).mkdir()
    stats = {"samples": 0, "src_tokens": 0, "tgt_tokens": 0, "dropped_overlong": 0, "truncated": 0,
             "pairs": n_pairs}  # fmt: skip
    task = progress.add_task(f"{split}: write", total=n_pairs)
    writer = FastShardWriter(str(root / split / "shard-%06d.tar"), maxcount=shard_size)
    rendering = root / f".rendering-{split}"
    rendering.mkdir()
    try:
        for (kinds, src_len, tgt_len, sizes), path in _rendered(units, max_len, overlong, workers, rendering):
            written = (kinds == WRITE) | (kinds == TRUNCATED)
            cut = len(kinds)  # records that count: all, or up to the one that reaches `limit`
            if limit is not None and stats["samples"] + int(written.sum()) >= limit:
                cut = int(np.flatnonzero(written)[limit - stats["samples"] - 1]) + 1
            kept = written[:cut]
            n = int(kept.sum())
            stats["samples"] += n
            stats["src_tokens"] += int(src_len[:cut][kept].sum())
            stats["tgt_tokens"] += int(tgt_len[:cut][kept].sum())
            stats["dropped_overlong"] += int((kinds[:cut] == DROPPED).sum())
            stats["truncated"] += int(((kinds[:cut] == TRUNCATED) | (kinds[:cut] == TRUNCATED_SKIPPED)).sum())
            with path.open("rb") as f:
                writer.write_run(f, sizes[:n].tolist())
            path.unlink()
            progress.advance(task, len(kinds))
            if stats["samples"] == limit:
                break
    finally:
        writer.close()
        shutil.rmtree(rendering, ignore_errors=True)
    stats["shards"] = [
        {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p, n in zip(writer.paths, writer.counts, strict=True)
    ]
    return stats
