"""Checkpoints that survive crashes, and which one `--resume auto` continues from. No model imports.

Layout of a run directory:
    config.yaml                 resolved config of the latest start
    checkpoints/last.ckpt       newest checkpoint (a file; a directory under DeepSpeed)
    checkpoints/last.ckpt.meta.json   its metadata: step, tokens, config hash, checksum (written last)
    checkpoints/step=N.ckpt     the newest `keep_checkpoints` periodic checkpoints, each with its .meta.json
    csv/version_K/, wandb/, wandb_id   logs (one CSV version per start)

Crash safety. A checkpoint file is written under a temporary name, fsynced and renamed into place
(`AtomicCheckpointIO`), and its metadata sidecar is written the same way only after the checkpoint is complete.
`find_resume_checkpoint` takes the newest checkpoint whose metadata exists and whose checksum matches; a truncated
or corrupt one is reported and skipped, and the previous one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError, RunConfig, identity_mismatch, to_dict

META_SUFFIX = ".meta.json"


class ResumeError(ValueError):
    """A checkpoint cannot be resumed; the message says which file and why."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def meta_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + META_SUFFIX)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checksum(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of a checkpoint file, or of every file of a checkpoint directory (DeepSpeed) in name order."""
    digest, total = hashlib.sha256(), 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return digest.hexdigest(), total


def write_metadata(ckpt: Path, step: int, tokens: int, config_hash: str, world_size: int) -> dict[str, Any]:
    sha, size = checksum(ckpt)
    meta = {
        "checkpoint": ckpt.name,
        "step": step,
        "tokens": tokens,
        "config_hash": config_hash,
        "world_size": world_size,
        "sha256": sha,
        "bytes": size,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_bytes(meta_path(ckpt), json.dumps(meta, indent=2).encode())
    return meta


def verify(ckpt: Path) -> tuple[dict[str, Any] | None, str]:
    """(metadata, "") when `ckpt` is complete and intact, else (None, the reason)."""
    meta_file = meta_path(ckpt)
    if not ckpt.exists():
        return None, "checkpoint missing"
    if not meta_file.exists():
        return None, "no metadata (the write did not finish)"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return None, f"unreadable metadata {meta_file.name}: {err}"
    sha, size = checksum(ckpt)
    if size != meta.get("bytes"):
        return None, f"truncated: {size} bytes, metadata says {meta.get('bytes')}"
    if sha != meta.get("sha256"):
        return None, "checksum mismatch (corrupt)"
    return meta, ""


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run (files or DeepSpeed directories named *.ckpt), whatever their state."""
    directory = checkpoint_dir(run_dir)
    return sorted(directory.glob("*.ckpt")) if directory.is_dir() else []


def find_resume_checkpoint(run_dir: Path, report: Any = None) -> Path | None:
    """Newest complete, intact checkpoint of `run_dir` (by step, then write time), or None for a fresh run.

    Broken candidates are reported through `report` (default: a warning on stderr) and skipped.
    """
    report = report or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    candidates = []
    for ckpt in list_checkpoints(run_dir):
        step = -1
        with contextlib.suppress(OSError, ValueError):
            step = int(json.loads(meta_path(ckpt).read_text()).get("step", -1))
        candidates.append((step, ckpt.stat().st_mtime, ckpt))
    for _, _, ckpt in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        meta, reason = verify(ckpt)
        if meta is not None:
            return ckpt
        report(f"not resuming from {ckpt}: {reason}; trying the previous checkpoint")
    return None


def checkpoint_to_read(run_dir: Path, explicit: str | None) -> Path | None:
    """The checkpoint `pipeline evaluate/export` read: `explicit`, else the run's newest intact one.

    Prints an error naming the run directory and returns None when there is none.
    """
    ckpt = Path(explicit) if explicit else find_resume_checkpoint(run_dir)
    if ckpt is None or not ckpt.exists():
        print(
            f"error: no checkpoint found in {run_dir}/checkpoints (train first, or pass --checkpoint)",
            file=sys.stderr,
        )
        return None
    return ckpt


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """`auto` -> newest intact checkpoint or None; `never` -> None; anything else is a path that must be intact."""
    if resume == "never":
        return None
    if resume == "auto":
        return find_resume_checkpoint(run_dir)
    path = Path(resume)
    if not path.exists():
        raise ResumeError(f"--resume {resume}: no such checkpoint")
    if meta_path(path).exists():
        meta, reason = verify(path)
        if meta is None:
            raise ResumeError(f"--resume {resume}: {reason}")
    return path


def check_config_compatible(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse to resume when a key that defines the model or the data stream changed (names the keys)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    diffs = identity_mismatch(saved, to_dict(cfg))
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a run with a different model/data config; refusing to resume it with:\n  "
            + "\n  ".join(diffs)
            + f"\nUse another run_dir (or name), or --resume never to start over in {run_dir}."
        )
