"""``manifest.json``, the one description of a prepared data dir: its layout, format version, hashes, read and written.

Layout of a prepared dir::

    tokenizer.json  manifest.json  {train,valid,test}/shard-000000.tar ...

The manifest records what the preparation was asked for (``args``: the keys that shape the data), the tokenizer's
and every shard's sha256, the samples per split and ``dataset_hash`` (one hash over the tokenizer and the shard
list). Preparation (``prepare/``) writes it; the loader and the checks (``stream/``) read it. A leaf: it imports
only ``location.py`` and ``text.py``, so the train-time reader never pulls in preparation code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.data.location import is_remote, join, read_bytes
from pipeline.data.text import SPLITS

# 3: LM windows disjoint, fed after BOS, with their clusters. 4: memory tasks (mqar, copy) store blocks
# of sequences per tar sample, not one each (a 3 reader would take a block for one sequence; see memory_spec.py).
FORMAT_VERSION = 4
# The versions whose text-task data (translation, passages, lm) this code reads: 4 changed the memory tasks' layout
# only, so a text data set prepared in format 3 need not be rebuilt.
TEXT_FORMATS_READ = (3, 4)
MANIFEST = "manifest.json"
SHARD_GLOB = "shard-*.tar"


class ShardError(RuntimeError):
    """A shard or tokenizer is missing, unreadable or does not match the manifest."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (corpus files and shards can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rebuild_hint(data_dir: str | Path) -> str:
    return (
        f"rebuild it with `pipeline data prepare --out {data_dir} --force` plus the options it was made with "
        "(e.g. --corpus bible:4-l --vocab-size 8000 --max-len 128, or --task copy --set max_len=16)"
    )


def has_shards(data_dir: Path) -> bool:
    """True when ``data_dir`` holds what ``prepare`` writes besides the manifest (tokenizer or shards)."""
    return (data_dir / "tokenizer.json").is_file() or any(
        any((data_dir / split).glob(SHARD_GLOB)) for split in SPLITS if (data_dir / split).is_dir()
    )


def dataset_hash(manifest: dict) -> str:
    """One hash over the tokenizer and every shard's path and hash (what identifies a preparation)."""
    digest = hashlib.sha256(manifest["tokenizer_sha256"].encode())
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            digest.update(f"{shard['path']}:{shard['sha256']}".encode())
    return digest.hexdigest()


def empty_split_reason(stats: dict, max_len: int) -> str:
    """Why a split ended with no samples, from its manifest counts."""
    pairs, dropped = stats.get("pairs"), stats.get("dropped_overlong", 0)
    if pairs == 0:
        return "the corpus gives it no pairs (a zero fraction, or too few lines for a held-out block)"
    if pairs is not None and dropped == pairs:
        return f"all {pairs:,} pairs longer than max_len={max_len}"
    if pairs is not None:
        return (
            f"{dropped:,} of {pairs:,} pairs longer than max_len={max_len}, the rest empty after tokenization"
        )
    return f"{dropped:,} pairs longer than max_len={max_len} were dropped"


def check_splits_not_empty(manifest: dict, where: str) -> None:
    for split in SPLITS:
        stats = manifest["splits"][split]
        if stats["samples"] == 0:
            raise ValueError(
                f"{split} split of corpus {manifest['corpus']} in {where} is empty: "
                f"{empty_split_reason(stats, manifest['max_len'])}"
            )


def check_format(manifest: dict, where: str, hint: str = "") -> None:
    """A manifest of another format version cannot be read by this code: one line naming both versions."""
    version = manifest.get("format_version")
    memory = isinstance(manifest.get("args"), dict) and "memory_task" in manifest["args"]
    if version in TEXT_FORMATS_READ and not memory:
        return
    if version != FORMAT_VERSION:
        found = f"{where} has format_version={manifest.get('format_version')!r}"
        raise ValueError(f"{found}, this code reads {FORMAT_VERSION}: {hint}" if hint else found)


_SHAPE = {"tokenizer_sha256": str, "max_len": int, "vocab_size": int, "corpus": str, "splits": dict}
_SPLIT_SHAPE = {"samples": int, "shards": list}
_SHARD_SHAPE = {"path": str, "sha256": str, "samples": int}


def check_shape(manifest: object, where: str) -> dict:
    """The keys every reader of a manifest of this format indexes, with their types: a manifest that was edited
    by hand or cut short is one error naming the missing key, not a KeyError in the loader. A manifest of another
    format version is left to `check_format`, which names both versions."""
    if not isinstance(manifest, dict):
        raise ValueError(f"corrupt manifest {where}: a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format_version") != FORMAT_VERSION:
        return manifest

    def need(mapping: dict, shape: dict, at: str) -> None:
        for name, kind in shape.items():
            if not isinstance(mapping.get(name), kind) or isinstance(mapping.get(name), bool):
                found = "missing" if name not in mapping else f"a {type(mapping[name]).__name__}"
                raise ValueError(
                    f"corrupt manifest {where}: '{at}{name}' is {found}, not a {kind.__name__}; "
                    f"{rebuild_hint(Path(where).parent)}"
                )

    need(manifest, _SHAPE, "")
    for split in SPLITS:
        if not isinstance(manifest["splits"].get(split), dict):
            raise ValueError(
                f"corrupt manifest {where}: 'splits.{split}' is missing; {rebuild_hint(Path(where).parent)}"
            )
        need(manifest["splits"][split], _SPLIT_SHAPE, f"splits.{split}.")
        for i, shard in enumerate(manifest["splits"][split]["shards"]):
            if not isinstance(shard, dict):
                raise ValueError(f"corrupt manifest {where}: 'splits.{split}.shards[{i}]' is not an object")
            need(shard, _SHARD_SHAPE, f"splits.{split}.shards[{i}].")
    return manifest


def read_manifest(data_dir: str | Path) -> dict:
    """Load ``DATA_DIR/manifest.json`` with an error that says how to make one (a remote location is read too)."""
    if is_remote(data_dir):
        url = join(data_dir, MANIFEST)
        try:
            loaded = json.loads(read_bytes(url))
        except json.JSONDecodeError as exn:
            raise ValueError(f"corrupt manifest {url}: {exn}") from exn
        except Exception as exn:
            raise FileNotFoundError(f"manifest unreadable: {url}: {type(exn).__name__}: {exn}") from exn
        return check_shape(loaded, url)
    path = Path(data_dir) / MANIFEST
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(
            f"data dir not found: {data_dir} (run `pipeline data prepare --out {data_dir}`)"
        )
    if not path.is_file() and has_shards(Path(data_dir)):
        raise FileNotFoundError(
            f"no {MANIFEST} in {data_dir}, but it holds shards: they cannot be verified without it; "
            f"{rebuild_hint(data_dir)}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST} in {data_dir}: not a prepared data dir (run `pipeline data prepare`)"
        )
    try:
        loaded = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exn:
        raise ValueError(f"corrupt manifest {path}: {exn}") from exn
    return check_shape(loaded, str(path))


def write_manifest(directory: Path, manifest: dict, where: str) -> dict:
    """Check that no split is empty, seal the manifest with its ``dataset_hash`` and write it into ``directory``.

    ``where`` names the preparation in the error (e.g. "the preparation of data/bible").
    """
    check_splits_not_empty(manifest, where)
    manifest["dataset_hash"] = dataset_hash(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
