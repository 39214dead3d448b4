"""The output dir of ``pipeline data prepare``: replaced only when that loses no user file, and only whole.

Everything is written into a sibling temp dir first; ``swap_in`` renames it into place, so a crash never leaves a
directory that looks prepared.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.data.corpus import SPLITS
from pipeline.data.verify import MANIFEST, has_shards, rebuild_hint


def check_replaceable(out_dir: Path, force: bool) -> None:
    """Only an empty dir or an earlier prepared one may be replaced; never a user's unrelated folder.

    A prepared dir that lost its manifest is replaced only with ``force`` (its shards cannot be verified).
    """
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
