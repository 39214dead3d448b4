"""Checks that a prepared data dir is whole and self-consistent, so bad data fails before training, not hours in.

``verify_prepared(data_dir)`` is the one call the trainer makes at start. It checks, without reading any shard:

- the manifest exists (a dir with shards but no manifest says how to rebuild it) and has this format version;
- ``tokenizer.json`` is the one this preparation wrote (sha256 against the manifest);
- every split has samples (an empty one names the split, the corpus and why, e.g. "all 1,500 pairs longer than
  max_len=1"), and its shard counts add up;
- every listed shard exists with the recorded size, and no shard file sits in a split dir unlisted (a shard dropped
  from the manifest, or copied in from another preparation);
- the manifest's ``dataset_hash`` still matches its own shard list (a hand-edited manifest).

Shard *contents* are hashed by the loader as each shard is opened, before any of its samples is yielded
(``loader.py``), because hashing every shard up front costs a full read of the corpus at every start. Pass
``hash_shards=True`` to hash them all here too (``pipeline data verify DIR`` style checks).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data.location import is_remote, join, read_bytes
from pipeline.data.manifest import (
    MANIFEST,
    SHARD_GLOB,
    ShardError,
    check_format,
    check_splits_not_empty,
    dataset_hash,
    read_manifest,
    rebuild_hint,
    sha256_file,
)
from pipeline.data.text import SPLITS

__all__ = ["ShardError", "verify_prepared"]


def verify_prepared(data_dir: str | Path, *, hash_shards: bool = False) -> dict:
    """Return ``data_dir``'s manifest after the checks in the module docstring; raise one clear line if any fails.

    Raises ``FileNotFoundError`` (nothing prepared, or no manifest), ``ValueError`` (an empty split, a manifest
    of another format) or ``ShardError`` (tokenizer or shards not those of this manifest).
    """
    if is_remote(data_dir):
        return _verify_remote(str(data_dir), read_manifest(data_dir))
    root = Path(data_dir)
    manifest = read_manifest(root)
    check_format(manifest, str(root / MANIFEST), rebuild_hint(root))
    tokenizer = root / "tokenizer.json"
    if not tokenizer.is_file():
        raise ShardError(f"tokenizer missing: {tokenizer} (listed in the manifest); {rebuild_hint(root)}")
    if tokenizer.stat().st_size == 0 or sha256_file(tokenizer) != manifest["tokenizer_sha256"]:
        raise ShardError(
            f"tokenizer {tokenizer} does not match {root / MANIFEST} (sha256 differs): it is from another "
            f"preparation or damaged; {rebuild_hint(root)}"
        )
    check_splits_not_empty(manifest, str(root))
    for split in SPLITS:
        stats = manifest["splits"][split]
        listed = {shard["path"] for shard in stats["shards"]}
        if sum(shard["samples"] for shard in stats["shards"]) != stats["samples"]:
            raise ShardError(
                f"{root / MANIFEST}: the {split} shards do not add up to {stats['samples']} samples"
            )
        for shard in stats["shards"]:
            path = root / shard["path"]
            if not path.is_file():
                raise ShardError(f"shard missing: {path} (listed in the manifest)")
            if "bytes" in shard and path.stat().st_size != shard["bytes"]:
                raise ShardError(
                    f"corrupt shard {path}: {path.stat().st_size} bytes, manifest says {shard['bytes']} "
                    "(truncated, or from another preparation)"
                )
            if hash_shards and sha256_file(path) != shard["sha256"]:
                raise ShardError(f"corrupt shard {path}: sha256 differs from the manifest")
        if (root / split).is_dir():
            for path in sorted((root / split).glob(SHARD_GLOB)):
                if f"{split}/{path.name}" not in listed:
                    raise ShardError(
                        f"shard {path} is not listed in {root / MANIFEST} (dropped from the manifest, or copied "
                        f"from another preparation); {rebuild_hint(root)}"
                    )
    if manifest.get("dataset_hash") != dataset_hash(manifest):
        raise ShardError(f"{root / MANIFEST} was edited: its dataset_hash no longer matches its shard list")
    return manifest


def _verify_remote(location: str, manifest: dict) -> dict:
    """What can be checked of a remote location without listing it: format, tokenizer hash, counts, dataset hash.

    Each shard's size and sha256 are checked by the loader as it reads it (``shard_io.read_verified``).
    """
    check_format(manifest, join(location, MANIFEST))
    url = join(location, "tokenizer.json")
    try:
        data = read_bytes(url)
    except Exception as exn:
        raise ShardError(f"tokenizer unreadable: {url}: {type(exn).__name__}: {exn}") from exn
    if hashlib.sha256(data).hexdigest() != manifest["tokenizer_sha256"]:
        raise ShardError(
            f"tokenizer {url} does not match the manifest (sha256 differs): from another preparation?"
        )
    check_splits_not_empty(manifest, location)
    for split in SPLITS:
        stats = manifest["splits"][split]
        if sum(shard["samples"] for shard in stats["shards"]) != stats["samples"]:
            raise ShardError(
                f"{join(location, MANIFEST)}: the {split} shards do not add up to {stats['samples']}"
            )
    if manifest.get("dataset_hash") != dataset_hash(manifest):
        raise ShardError(
            f"{join(location, MANIFEST)} was edited: its dataset_hash no longer matches its shards"
        )
    return manifest
