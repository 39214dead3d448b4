"""Lightning pieces that make checkpoints crash-safe and complete (the file layout lives in `checkpoint.py`).

- `AtomicCheckpointIO`: checkpoint files are written to a temporary name, fsynced and renamed.
- `VerifiedModelCheckpoint`: Lightning's ModelCheckpoint, plus a metadata sidecar (step, tokens, config hash,
  checksum) written once the checkpoint and every log row up to its step are on disk: the sidecar is what marks a
  checkpoint as complete for `--resume auto`.
- `RngStateCallback`: every rank's RNG state goes into the checkpoint, so dropout masks after a resume are the
  ones an uninterrupted run would have drawn (bit-exact resume on CPU).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pipeline.config import config_hash, to_dict
from pipeline.training.checkpoint_files import atomic_write_bytes, meta_path, write_metadata


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (just [obj] when not distributed). All ranks must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        meta = meta_path(Path(path))
        if meta.exists():
            meta.unlink()


class VerifiedModelCheckpoint(ModelCheckpoint):
    """Checkpoints at Lightning's usual point (end of step N), marked complete one step later.

    Lightning hands step N's metrics to the loggers only after `on_train_batch_end`, where the checkpoint is taken.
    So the metadata that marks a checkpoint complete is written at the start of step N+1 (or at the end of
    training), after the loggers are flushed: a checkpoint that `--resume auto` accepts always has every logged row
    up to its step on disk, and a kill -9 in between makes the resume fall back to the previous checkpoint, which
    re-trains and re-logs the steps in between. No gap in the logs either way.
    """

    def __init__(self, *args: Any, token_counter: Any, **kwargs: Any) -> None:
        """token_counter: the run's `ThroughputCallback`; its `total_tokens` (this rank's) goes into the metadata."""
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter
        self._unverified: list[tuple[Path, int, int]] = []  # (checkpoint, step, tokens) awaiting metadata

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        tokens = self.token_counter.total_tokens * trainer.world_size
        self._unverified.append((Path(filepath), trainer.global_step, tokens))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._mark_complete(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._mark_complete(trainer)

    def _mark_complete(self, trainer: L.Trainer) -> None:
        if not self._unverified:
            return
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero:
            digest = config_hash(to_dict(trainer.lightning_module.cfg))
            for path, step, tokens in self._unverified:
                if path.exists():  # not already rotated out by save_top_k
                    write_metadata(path, step, tokens, digest, trainer.world_size)
        self._unverified.clear()

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        meta = meta_path(Path(filepath))
        if trainer.is_global_zero and meta.exists():
            meta.unlink()

    def save_now(self, trainer: L.Trainer) -> Path:
        """Save `last.ckpt` at this step boundary (used on preemption signals; marked complete at train end)."""
        path = Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        self._save_checkpoint(trainer, str(path))
        return path


def _local_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class RngStateCallback(L.Callback):
    """Saves each rank's RNG state; restores it on resume when the world size is unchanged."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": gather_objects(_local_rng_state())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("ranks")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._pending or len(self._pending) != trainer.world_size:
            return  # fresh run, or another world size: the seeded RNG is used (resume is then not bit-exact)
        state = self._pending[trainer.global_rank]
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        self._pending = None
