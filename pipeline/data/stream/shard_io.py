"""Reading one shard from a data location (``location.py``), verified against the manifest before it is decoded.

A shard is read whole, then its size and sha256 are checked before any sample is decoded: a connection dropped
mid-shard gives a short or different byte string, which is retried (remote only, ``retries`` times with a growing
pause) and otherwise is an error naming the shard, never a shard with silently fewer samples. Shards are a few MB
(``shard_size`` samples), so holding one in memory is cheap and makes the check a single read.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator

from webdataset.tariterators import group_by_keys, tar_file_expander

from pipeline.data.location import is_remote, read_bytes
from pipeline.data.manifest import ShardError

REMOTE_RETRIES = 3


def read_verified(url: str, shard: dict, retries: int = REMOTE_RETRIES) -> bytes:
    """One shard's bytes after checking size (if recorded) and sha256; remote reads are retried."""
    attempts = 1 + (retries if is_remote(url) else 0)
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.2 * 2**attempt)
        try:
            data = read_bytes(url)
        except Exception as exn:  # any opener failure (curl exit status, OSError, ...) is a failed read
            problem = f"unreadable: {type(exn).__name__}: {exn}"
            continue
        if "bytes" in shard and len(data) != shard["bytes"]:
            problem = f"{len(data)} bytes, manifest says {shard['bytes']}"
            continue
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            problem = "sha256 differs from the manifest (damaged, or from another preparation)"
            continue
        return data
    tries = f" (after {attempts} tries)" if attempts > 1 else ""
    raise ShardError(f"corrupt shard {url}: {problem}{tries}")


def tar_samples(data: bytes, url: str) -> Iterator[dict]:
    """Raw webdataset samples (``__key__`` + one bytes value per extension) of an in-memory tar shard."""
    return group_by_keys(tar_file_expander([{"url": url, "stream": io.BytesIO(data)}]))
