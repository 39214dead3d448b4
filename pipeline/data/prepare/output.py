"""The output dir of ``pipeline data prepare``: written whole, and replaced only when that loses no user file.

Everything is written into a sibling temp dir first (``write_prepared``: every split's shards, the tokenizer, the
manifest); ``swap_in`` renames it into place, so a crash never leaves a directory that looks prepared.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from rich.progress import Progress

from pipeline.data.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    has_shards,
    rebuild_hint,
    sha256_file,
    write_manifest,
)
from pipeline.data.prepare.merge_split import write_units
from pipeline.data.prepare.shard_writer import write_split as _write_split  # module-level: tests patch it
from pipeline.data.text import SPLITS
from pipeline.data.tokenizer import SPECIAL_IDS, TextTokenizer

SCRATCH = ".scratch"  # the streamed path's plan and parts inside the temp dir (plan.py), dropped once written


def check_replaceable(out_dir: Path, force: bool) -> None:
    """Only an empty dir or an earlier prepared one may be replaced; never a user's unrelated folder.

    A prepared dir that lost its manifest is replaced only with ``force`` (its shards cannot be verified).
    """
    for parent in out_dir.parents:  # a path under a file: mkdir would fail with a traceback deep in writing
        if parent.exists() and not parent.is_dir():
            raise FileExistsError(f"{out_dir}: {parent} is a file, not a directory")
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if out_dir.is_dir() and (out_dir / MANIFEST).is_file():
        return
    if out_dir.is_dir() and has_shards(out_dir) and _only_prepared_files(out_dir):
        if force:
            return
        raise FileExistsError(f"{out_dir} holds shards but no {MANIFEST}: {rebuild_hint(out_dir)}")
    raise FileExistsError(f"{out_dir} exists and is not a prepared data dir: refusing to overwrite it")


def _only_prepared_files(out_dir: Path) -> bool:
    """True if ``out_dir`` holds nothing but what ``prepare`` writes (so replacing it loses no user file)."""
    for entry in out_dir.iterdir():
        if entry.name in (MANIFEST, "tokenizer.json") and entry.is_file():
            continue
        if entry.name in SPLITS and entry.is_dir() and all(p.match("shard-*.tar") for p in entry.iterdir()):
            continue
        return False
    return True


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temp dir onto ``out_dir``; an older prepared dir is moved aside, then deleted."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_prepared(tmp: Path, tokenizer: TextTokenizer, records: Iterable[tuple[str, Iterable]], sizes: dict,
                   extra: dict, settings: dict, drain: bool = False, workers: int | None = None) -> dict:  # fmt: skip
    """Shard every split into ``tmp``, write the manifest, and rename ``tmp`` onto ``settings["out_dir"]``.

    ``records``: (split, its record chunks), or with ``workers`` (the streamed merge) (split, its units, rendered
    in ``workers`` processes: ``merge_split.py``). ``drain``: the chunks come from one pass over the input, so what
    ``limit`` leaves of a split is read past.
    """
    limit = settings["limit"]
    tokenizer.save(tmp / "tokenizer.json")
    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "corpus": settings["corpus"],
        "args": settings["args"],
        "vocab_size": tokenizer.vocab_size,
        "special_ids": dict(SPECIAL_IDS),
        "max_len": settings["max_len"],
        "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
        "splits": {},
        **extra,
    }
    with Progress(transient=True) as progress:
        for split, split_chunks in records:
            shape = (sizes[split], tmp, split, settings["max_len"], settings["shard_size"], settings["overlong"],
                     limit, progress)  # fmt: skip
            manifest["splits"][split] = {
                **(write_units(split_chunks, *shape, workers=workers) if workers is not None else
                   _write_split(split_chunks, *shape, allow_empty_src=settings["task"] == "lm")),
                **extra.pop(f"{split}_stats", {}),
            }  # fmt: skip
            for _ in split_chunks if drain else ():
                pass
    manifest["splits"] = {split: manifest["splits"][split] for split in SPLITS}
    out_dir = Path(settings["out_dir"])
    write_manifest(tmp, manifest, f"the preparation of {out_dir}")
    shutil.rmtree(tmp / SCRATCH, ignore_errors=True)
    swap_in(tmp, out_dir)
    return manifest
