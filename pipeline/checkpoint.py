"""Where a run's checkpoints live and which one `--resume auto` continues from. No model imports.

Layout of a run directory:
    config.yaml            resolved config of the latest start
    checkpoints/last.ckpt  newest checkpoint (Lightning `save_last`)
    checkpoints/step=N.ckpt   the newest `keep_checkpoints` periodic checkpoints
    hpc_ckpt_K.ckpt        written by Lightning's SLURM handler on SIGUSR1 before a requeue
    csv/, wandb/, wandb_id  logs
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import ConfigError, RunConfig, identity_mismatch, to_dict


class ResumeError(RuntimeError):
    """A checkpoint cannot be resumed; the message says which file and why."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """All checkpoints of a run, oldest first (by modification time, then name)."""
    found = list(checkpoint_dir(run_dir).glob("*.ckpt")) + list(run_dir.glob("hpc_ckpt_*.ckpt"))
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """Newest checkpoint in `run_dir`, or None for a fresh run."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """`auto` -> newest checkpoint or None; `never` -> None; anything else is a path that must exist."""
    if resume == "never":
        return None
    if resume == "auto":
        return find_resume_checkpoint(run_dir)
    path = Path(resume)
    if not path.exists():
        raise ResumeError(f"--resume {resume}: no such checkpoint file")
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
