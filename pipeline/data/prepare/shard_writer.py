"""Writing tokenized records into webdataset tar shards, with the manifest entry of the split.

Each sample holds ``__key__``, ``src.i32`` / ``tgt.i32`` (token ids, no BOS/EOS, raw little-endian int32) and
``src.txt`` / ``tgt.txt``. Overlong records are dropped (or truncated) and counted; ``limit`` caps the samples.
Shards are reproducible byte for byte (fixed mtime, plain ustar headers), so the same input gives the same hashes,
and identical to what ``webdataset.ShardWriter(mtime=0)`` writes (``fast_tar.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from rich.progress import Progress

from pipeline.data.manifest import sha256_file
from pipeline.data.prepare.fast_tar import FastShardWriter
from pipeline.data.text import Record


def write_split(chunks: Iterable[list[Record]], n_pairs: int, root: Path, split: str, max_len: int,
                 shard_size: int, overlong: str, limit: int | None, progress: Progress,
                 allow_empty_src: bool = False) -> dict:  # fmt: skip
    """Shard one split's tokenized records; returns its manifest entry."""
    (root / split).mkdir()
    stats = {"samples": 0, "src_tokens": 0, "tgt_tokens": 0, "dropped_overlong": 0, "truncated": 0,
             "pairs": n_pairs}  # fmt: skip
    task = progress.add_task(f"{split}: tokenize + write", total=n_pairs)
    # the bytes webdataset.ShardWriter(mtime=0) writes, without tarfile's per-member cost (fast_tar.py)
    writer = FastShardWriter(str(root / split / "shard-%06d.tar"), maxcount=shard_size)
    try:
        for chunk in chunks:
            for key, src, tgt, s_ids, t_ids in chunk:
                if max(len(s_ids), len(t_ids)) > max_len + allow_empty_src:  # an LM window holds context + 1
                    if overlong == "drop":
                        stats["dropped_overlong"] += 1
                        continue
                    stats["truncated"] += 1
                    s_ids, t_ids = s_ids[:max_len], t_ids[:max_len]
                if (not len(s_ids) and not allow_empty_src) or not len(t_ids):
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
    shards, counts = writer.paths, writer.counts  # an empty split has no shard
    stats["shards"] = [
        {"path": f"{split}/{p.name}", "samples": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p, n in zip(shards, counts, strict=True)
    ]
    return stats
