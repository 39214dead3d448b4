"""A run's per-token validation losses, ``<run>/valid_token_losses.npz``: write, read, validate (one owner).

Written at the run's final validation (`save_token_losses`, called by the trainer):

- ``loss``: float32 [N_seq, T_max], the loss (nats) of every target token of every validation sequence (one
  translation pair, or one LM window), NaN where the sequence is shorter than T_max;
- ``seq_id`` (optional): int64 [N_seq], a stable id of each sequence (its index in the validation split), so
  runs whose validation order differed (ranks, length buckets) are aligned before pairing. Without it, rows are
  taken to be in the same order in every run;
- ``src_len`` (optional): int [N_seq], each pair's source length (translation runs; absent or all 0 for LM runs);
- other arrays (e.g. the ``step`` validated) are stored as given and not read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.scaling.records.json_file import write_atomic
from pipeline.scaling.records.run_dir import TOKEN_LOSS_FILE


@dataclass
class TokenLosses:
    loss: np.ndarray  # float [N_seq, T_max], NaN = padding
    seq_id: np.ndarray  # int [N_seq]
    source: str
    src_len: np.ndarray | None = None  # int [N_seq] source tokens per pair; None for LM runs and older files


def save_token_losses(run_dir: str | Path, loss: Any, seq_id: Any = None, **extra: Any) -> Path:
    """Write ``run_dir/valid_token_losses.npz`` atomically (checked by the same rules the reader applies); `extra`
    arrays (e.g. ``src_len`` per sequence, the ``step`` validated) are stored beside ``loss``."""
    path = Path(run_dir) / TOKEN_LOSS_FILE
    arrays = {"loss": np.asarray(loss, dtype=np.float32), **{k: np.asarray(v) for k, v in extra.items()}}
    if seq_id is not None:
        arrays["seq_id"] = np.asarray(seq_id, dtype=np.int64)
    _check(arrays, str(path))

    def write(f: IO[bytes]) -> None:
        np.savez_compressed(f, **arrays)

    return write_atomic(path, write, binary=True)


def _check(arrays: dict[str, np.ndarray], source: str) -> TokenLosses:
    if "loss" not in arrays:
        raise ValueError(f"{source}: missing array 'loss'")
    loss = np.asarray(arrays["loss"], dtype=float)
    if loss.ndim != 2 or loss.shape[0] == 0 or loss.shape[1] == 0:
        raise ValueError(
            f"{source}: array 'loss' must be [N_seq, T_max] and non-empty, got shape {loss.shape}"
        )
    if np.any(np.isinf(loss)) or np.any(loss[np.isfinite(loss)] < 0):
        raise ValueError(f"{source}: array 'loss' must hold losses >= 0 or NaN (padding)")
    seq_id = np.asarray(arrays["seq_id"]) if "seq_id" in arrays else np.arange(len(loss))
    if seq_id.shape != (len(loss),) or not np.issubdtype(seq_id.dtype, np.integer):
        raise ValueError(
            f"{source}: array 'seq_id' must be integers of shape ({len(loss)},), got {seq_id.shape}"
        )
    if len(np.unique(seq_id)) != len(seq_id):
        raise ValueError(f"{source}: array 'seq_id' repeats ids")
    src_len = None
    if "src_len" in arrays and np.asarray(arrays["src_len"]).any():  # all 0: an LM run
        src_len = np.asarray(arrays["src_len"]).astype(int)
        if src_len.shape != (len(loss),):
            raise ValueError(f"{source}: array 'src_len' must have shape ({len(loss)},), got {src_len.shape}")
    return TokenLosses(loss, seq_id, source, src_len)


def load_token_losses(run_dir: str | Path) -> TokenLosses | None:
    """The run's per-token validation losses, or None when it has no ``valid_token_losses.npz`` (old record)."""
    path = Path(run_dir) / TOKEN_LOSS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz ({e})") from e
    return _check(arrays, str(path))
