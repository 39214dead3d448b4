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

Never losing a run. `resume_checkpoint` is what `fit` calls:
- `--resume auto` refuses, listing every checkpoint and why, when checkpoints exist and none verifies; and when the
  run directory has logs but no `checkpoints/` (deleted, or not copied). It never deletes or overwrites anything.
- `--resume fresh` (alias `never`) is the explicit way to start at step 0 in a directory that has a previous
  state: that state (checkpoints, CSV logs, config, summary, W&B id) is moved to `<run_dir>/previous-<time>/`.
- a checkpoint whose sidecar `config_hash` differs from this run's is refused, naming the differing keys (read
  from the checkpoint's saved hyper-parameters). Only `IDENTITY_KEYS` enter the hash, so `train.max_steps`,
  logging etc. may change on resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError, RunConfig, config_hash, identity_mismatch, to_dict
from pipeline.scaling.records.json_file import write_bytes_atomic
from pipeline.training.checkpoint_contents import saved_config, verify_content

META_SUFFIX = ".meta.json"
FRESH = ("fresh", "never")  # --resume values that start at step 0, moving a previous state aside
PREVIOUS_PREFIX = "previous-"  # <run_dir>/previous-<time>/: the state a `--resume fresh` moved aside
KEPT_ON_FRESH = ("slurm", "wandb")  # job scripts and W&B's offline run folders stay where they are


class ResumeError(ValueError):
    """A checkpoint cannot be resumed; the message says which file and why."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def meta_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + META_SUFFIX)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never half of one."""
    write_bytes_atomic(path, data, fsync=True)


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
        return None, f"no metadata sidecar {meta_file.name} (the write did not finish, or it was not copied)"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable metadata {meta_file.name}: {err}"
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or "bytes" not in meta:
        return None, f"metadata {meta_file.name} lacks its checksum (sha256, bytes)"
    try:
        sha, size = checksum(ckpt)
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    if size != meta.get("bytes"):
        return None, f"truncated or changed: {size} bytes, metadata says {meta.get('bytes')}"
    if sha != meta.get("sha256"):
        return None, "checksum mismatch (corrupt)"
    return meta, ""


def verify_all(ckpt: Path) -> tuple[dict[str, Any] | None, str]:
    """`verify`, then `verify_content`: (metadata, "") for a checkpoint that can be resumed, else (None, why)."""
    meta, reason = verify(ckpt)
    if meta is None:
        return None, reason
    reason = verify_content(ckpt, meta)
    return (None, reason) if reason else (meta, "")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run (files or DeepSpeed directories named *.ckpt), whatever their state."""
    directory = checkpoint_dir(run_dir)
    return sorted(directory.glob("*.ckpt")) if directory.is_dir() else []


def _sidecar_step(ckpt: Path) -> int:
    """The step in a checkpoint's sidecar, -1 when the sidecar is missing or unreadable."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        return int(json.loads(meta_path(ckpt).read_text()).get("step", -1))
    return -1


def _newest_first(ckpts: list[Path]) -> list[Path]:
    """By the step in the sidecar (unreadable: -1), then by write time."""
    keyed = []
    for ckpt in ckpts:
        mtime = 0.0
        with contextlib.suppress(OSError):
            mtime = ckpt.stat().st_mtime
        keyed.append((_sidecar_step(ckpt), mtime, ckpt))
    return [c for _, _, c in sorted(keyed, key=lambda c: (c[0], c[1]), reverse=True)]


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def find_resume_checkpoint(run_dir: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """Newest complete, intact checkpoint of `run_dir` (by step, then write time), or None when there is none.

    Broken candidates (`verify_all`: the sidecar, then the contents) are reported through `report` (default: a
    warning on stderr) and skipped; so are those whose sidecar is unreadable (their step unknown, they sort last),
    even when an older checkpoint is chosen.
    """
    report = report or _warn
    chosen = None
    for ckpt in _newest_first(list_checkpoints(run_dir)):
        if chosen is not None and _sidecar_step(ckpt) >= 0:
            continue  # an older intact-looking checkpoint: not needed, not reported
        meta, reason = verify_all(ckpt)
        if meta is not None:
            chosen = chosen or ckpt
        elif chosen is None:
            report(f"not resuming from {ckpt}: {reason}; trying the previous checkpoint")
        else:
            report(f"not resuming from {ckpt}: {reason}; its step is unknown, using {chosen.name}")
    return chosen


def none_verified_message(run_dir: Path, what: str) -> str:
    """'<what>: none of the N checkpoints in DIR verifies:' + one line per checkpoint and its reason."""
    ckpts = list_checkpoints(run_dir)
    lines = [f"  {ckpt}: {verify_all(ckpt)[1]}" for ckpt in ckpts]
    return (
        f"{what}: none of the {len(ckpts)} checkpoint(s) in {checkpoint_dir(run_dir)} verifies:\n"
        + "\n".join(lines)
    )


def explicit_problem(ckpt: Path) -> str:
    """Why a checkpoint the user named cannot be read ("" if it can): its sidecar's verdict when it has one, then
    its contents (a file with no sidecar is read unverified, but never handed to Lightning unreadable)."""
    meta = None
    if meta_path(ckpt).exists():
        meta, reason = verify(ckpt)
        if meta is None:
            return reason
    return verify_content(ckpt, meta)


def checkpoint_to_read(run_dir: Path, explicit: str | None, command: str = "pipeline") -> Path | None:
    """The checkpoint `pipeline evaluate/export` read: `explicit`, else the run's newest intact one.

    Prints one error line naming the file (or the run directory) and returns None when there is none to read.
    """
    if explicit:
        ckpt = Path(explicit)
        if not ckpt.exists():
            print(f"{command}: error: checkpoint not found: {ckpt}", file=sys.stderr)
            return None
        reason = explicit_problem(ckpt)
        if reason:
            print(f"{command}: error: checkpoint {ckpt}: {reason}", file=sys.stderr)
            return None
        if not meta_path(ckpt).exists():
            _warn(f"{ckpt} has no metadata sidecar {meta_path(ckpt).name}: reading it unverified")
        return ckpt
    if not run_dir.is_dir():
        print(f"{command}: error: run directory not found: {run_dir}", file=sys.stderr)
        return None
    ckpt = find_resume_checkpoint(run_dir)
    if ckpt is not None:
        return ckpt
    if list_checkpoints(run_dir):
        print(f"{command}: error: {none_verified_message(run_dir, str(run_dir))}\n(pass --checkpoint FILE to read one anyway)",
              file=sys.stderr)  # fmt: skip
    else:
        print(
            f"{command}: error: no checkpoint in {checkpoint_dir(run_dir)} (train first, or pass --checkpoint)",
            file=sys.stderr,
        )
    return None


def launch_rank() -> int:
    """This process's global rank from the launcher's environment (Lightning's children, torchrun, srun); 0 alone.

    Read before the Trainer exists, the way Lightning's own `rank_zero_only` does."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def previous_state(run_dir: Path) -> list[str]:
    """Names in `run_dir` that a start leaves behind (checkpoints, logs, config, summary), sorted."""
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in run_dir.iterdir()
        if p.name not in KEPT_ON_FRESH
        and not p.name.startswith(PREVIOUS_PREFIX)
        and not p.name.startswith(".")
    )


def move_aside(run_dir: Path) -> Path | None:
    """Move the previous state of `run_dir` (see `previous_state`) into `<run_dir>/previous-<time>/`; its path."""
    names = previous_state(run_dir)
    if not names:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir / f"{PREVIOUS_PREFIX}{stamp}"
    counter = 1
    while target.exists():
        counter += 1
        target = run_dir / f"{PREVIOUS_PREFIX}{stamp}-{counter}"
    target.mkdir()
    for name in names:
        shutil.move(str(run_dir / name), str(target / name))
    return target


def check_checkpoint_config(ckpt: Path, cfg: RunConfig) -> None:
    """Refuse a checkpoint written by a run of another model/data config (sidecar `config_hash`), naming the keys."""
    saved_hash = None
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no/odd sidecar: nothing to compare
        saved_hash = json.loads(meta_path(ckpt).read_text()).get("config_hash")
    current = to_dict(cfg)
    if not saved_hash or saved_hash == config_hash(current):
        return
    saved = saved_config(ckpt)
    diffs = identity_mismatch(saved, current) if saved is not None else []
    detail = (
        "\n  " + "\n  ".join(diffs)
        if diffs
        else f" (config hash {saved_hash}, this run's {config_hash(current)})"
    )
    raise ResumeError(
        f"{ckpt} was written by a run with a different model/data config; refusing to resume from it:{detail}"
        "\nRemove it, pass --resume PATH of a checkpoint of this run, or --resume fresh."
    )


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """`auto` -> newest intact checkpoint or None; `fresh`/`never` -> None; else a path that must be intact.

    Read-only: `resume_checkpoint` adds the refusals and the move-aside of `--resume fresh`.
    """
    if resume in FRESH:
        return None
    if resume == "auto":
        return find_resume_checkpoint(run_dir)
    path = Path(resume)
    if not path.exists():
        raise ResumeError(f"--resume {resume}: no such checkpoint")
    reason = explicit_problem(path)
    if reason:
        raise ResumeError(f"--resume {resume}: {reason}")
    if not meta_path(path).exists():
        _warn(f"--resume {resume}: no metadata sidecar {meta_path(path).name}; resuming from it unverified")
    return path


def resume_checkpoint(
    resume: str, cfg: RunConfig, report: Callable[[str], None] | None = None
) -> Path | None:
    """The checkpoint `fit` continues from (None: step 0), after every refusal of "never lose a run silently".

    Raises ResumeError (one message naming each file and why) instead of starting over when `--resume auto` finds
    checkpoints of which none verifies, or logs without a `checkpoints/` directory; `--resume fresh` moves the
    previous state aside first (rank 0 only: the other ranks start after it). Creates `checkpoints/`, so that a run
    stopped before its first checkpoint is told apart from one whose checkpoints were deleted.
    """
    report = report or _warn
    run_dir = cfg.resolved_run_dir
    rank = launch_rank()
    fresh_hint = (
        f"--resume fresh moves them to {run_dir}/{PREVIOUS_PREFIX}<time>/ and starts at step 0; "
        "--resume PATH continues from a checkpoint file you choose"
    )
    if resume in FRESH:
        moved = move_aside(run_dir) if rank == 0 else None
        if moved is not None:
            report(f"--resume {resume}: moved the previous state of {run_dir} to {moved}; starting at step 0")
        checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)
        return None
    if resume == "auto":
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            orphans = sorted(checkpoint_dir(run_dir).glob(f"*.ckpt{META_SUFFIX}"))
            if orphans:
                raise ResumeError(
                    f"--resume auto: {checkpoint_dir(run_dir)} holds {len(orphans)} checkpoint sidecar(s) "
                    f"({', '.join(p.name for p in orphans)}) but none of their checkpoints; {fresh_hint}"
                )
            logs = previous_state(run_dir)
            if logs and not checkpoint_dir(run_dir).is_dir():
                raise ResumeError(
                    f"--resume auto: {run_dir} holds a previous run ({', '.join(logs)}) but no checkpoints/ "
                    f"directory (deleted, or not copied); {fresh_hint}"
                )
            if logs and rank == 0:
                report(f"no checkpoint in {checkpoint_dir(run_dir)} yet (the previous start stopped before its "
                       "first one): starting at step 0")  # fmt: skip
            checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)
            return None
        ckpt = find_resume_checkpoint(run_dir, report if rank == 0 else lambda _: None)
        if ckpt is None:
            raise ResumeError(
                none_verified_message(run_dir, "--resume auto")
                + f"\nNothing was changed. {fresh_hint[0].upper()}{fresh_hint[1:]}."
            )
    else:
        ckpt = resolve_resume(resume, run_dir)
    assert ckpt is not None
    check_config_compatible(run_dir, cfg)
    check_checkpoint_config(ckpt, cfg)
    return ckpt


def check_config_compatible(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse to resume when a key that defines the model or the data stream changed (names the keys)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ResumeError(
            f"{saved_path}: unreadable saved config ({type(err).__name__}); cannot check it"
        ) from err
    if not isinstance(saved, dict):
        raise ResumeError(f"{saved_path}: saved config is not a mapping; cannot check it")
    diffs = identity_mismatch(saved, to_dict(cfg))
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a run with a different model/data config; refusing to resume it with:\n  "
            + "\n  ".join(diffs)
            + f"\nUse another run_dir (or name), or --resume fresh to move it aside and start over in {run_dir}."
        )
