"""A run's per-token validation losses, ``<run>/valid_token_losses.npz``: write, read, validate (one owner).

Written at each validation (`save_token_losses`, called by the training module; the last one is the final
model's). Format version 2 (``format_version``), one row per validation sequence (a translation pair, an LM
window, a memory-task string), T_max columns (target positions):

- ``loss``: float32 [N_seq, T_max], the loss (nats) of every scored target token, NaN elsewhere (padding, and
  for memory tasks every non-answer position);
- ``seq_key``: str [N_seq], the sample's key in the prepared shards (the loader's ``keys``): a stable id that
  joins a row to its text whatever order the validation ran in; ``seq_id``: int64 [N_seq], a 63-bit hash of it,
  on which runs are paired (rows sorted by it);
- ``tokens``: int32 [N_seq, T_max], the target token ids (0 = padding); ``inputs``: int32 [N_seq, T_max], the
  token fed at each position (BOS, then the previous target; a memory task's whole string), so "the tokens that
  follow a marker" are the positions whose input is the marker;
- ``scored``: bool [N_seq, T_max], the positions the loss scores (a memory task's answer positions);
- ``src_len``: int [N_seq], each pair's source length (translation runs; all 0 otherwise);
- ``step``: the training step validated.

Version 1 files (``loss``, optional ``seq_id`` = the row's index, ``src_len``) still load, without tokens; a
newer version is refused with one line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.scaling.records.json_file import write_atomic
from pipeline.scaling.records.run_dir import TOKEN_LOSS_FILE

FORMAT_VERSION = 2


@dataclass
class TokenLosses:
    loss: np.ndarray  # float [N_seq, T_max], NaN = not scored
    seq_id: np.ndarray  # int [N_seq]
    source: str
    src_len: np.ndarray | None = None  # int [N_seq] source tokens per pair; None for LM runs and older files
    seq_key: np.ndarray | None = None  # str [N_seq]; None in version 1 files
    tokens: np.ndarray | None = None  # int [N_seq, T_max] target ids; None in version 1 files
    inputs: np.ndarray | None = None  # int [N_seq, T_max] input ids; None in version 1 files
    scored: np.ndarray | None = None  # bool [N_seq, T_max]; None in version 1 files (then: finite loss)


def key_ids(keys: Any) -> np.ndarray:
    """Stable int64 ids of sample keys (the first 63 bits of their BLAKE2b hash): the same key, the same id in
    every run and process."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "little") >> 1
            for k in keys
        ],
        dtype=np.int64,
    )


def save_token_losses(
    run_dir: str | Path, loss: Any, seq_id: Any = None, seq_key: Any = None, **extra: Any
) -> Path:
    """Write ``run_dir/valid_token_losses.npz`` atomically (checked by the same rules the reader applies).
    `seq_key`: the samples' keys (``seq_id`` is then their `key_ids`); `extra` arrays (``tokens``, ``inputs``,
    ``scored``, ``src_len``, ``step``) are stored beside ``loss``."""
    path = Path(run_dir) / TOKEN_LOSS_FILE
    arrays = {"loss": np.asarray(loss, dtype=np.float32), **{k: np.asarray(v) for k, v in extra.items()}}
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    if seq_key is not None:
        arrays["seq_key"] = np.asarray([str(k) for k in seq_key], dtype=str)
        seq_id = key_ids(arrays["seq_key"]) if seq_id is None else seq_id
    if seq_id is not None:
        arrays["seq_id"] = np.asarray(seq_id, dtype=np.int64)
    for name, dtype in (("tokens", np.int32), ("inputs", np.int32), ("scored", bool)):
        if name in arrays:
            arrays[name] = arrays[name].astype(dtype)
    _check(arrays, str(path))

    def write(f: IO[bytes]) -> None:
        np.savez_compressed(f, **arrays)

    return write_atomic(path, write, binary=True)


def _check(arrays: dict[str, np.ndarray], source: str) -> TokenLosses:
    version = int(arrays["format_version"]) if "format_version" in arrays else 1
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{source}: format_version {version} is newer than this pipeline reads ({FORMAT_VERSION}): update it"
        )
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
    seq_key = np.asarray(arrays["seq_key"]) if "seq_key" in arrays else None
    if seq_key is not None and seq_key.shape != (len(loss),):
        raise ValueError(f"{source}: array 'seq_key' must have shape ({len(loss)},), got {seq_key.shape}")
    grids = {}
    for name in ("tokens", "inputs", "scored"):
        if name in arrays:
            grids[name] = np.asarray(arrays[name])
            if grids[name].shape != loss.shape:
                raise ValueError(f"{source}: array {name!r} must have the shape of 'loss' {loss.shape}, "
                                 f"got {grids[name].shape}")  # fmt: skip
    if "scored" in grids and np.any(np.isfinite(loss) & ~grids["scored"].astype(bool)):
        raise ValueError(f"{source}: array 'loss' has a value at a position 'scored' leaves out")
    return TokenLosses(loss, seq_id, source, src_len, seq_key, grids.get("tokens"), grids.get("inputs"),
                       None if "scored" not in grids else grids["scored"].astype(bool))  # fmt: skip


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
