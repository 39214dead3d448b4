"""Loss by target position with 95 % CIs, from per-token validation losses, and the arch/reference log ratio.

Each run may leave ``<run_dir>/valid_token_losses.npz`` (written at its final validation by
`save_token_losses`):

- ``loss``: float32 [N_seq, T_max], the loss (nats) of every target token of every validation sequence (one
  translation pair, or one LM window), NaN where the sequence is shorter than T_max;
- ``seq_id`` (optional): int64 [N_seq], a stable id of each sequence (its index in the validation split), so
  runs whose validation order differed (ranks, length buckets) are aligned before pairing. Without it, rows are
  taken to be in the same order in every run.

The sequence, not the token, is the resampling unit: tokens of one sequence share its difficulty. Two runs
scored on the same sequences are compared with a *paired* bootstrap (the same resampled sequences on both
sides). Records written before this file existed fall back to ``record.loss_by_position``, without CIs.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_LOSS_FILE = "valid_token_losses.npz"
N_BOOT = 999  # resamples of validation sequences (cheap: one matrix product per side)
MIN_SEQS = 20  # positions reached by fewer sequences get no CI and are left out of the bend test


@dataclass
class TokenLosses:
    loss: np.ndarray  # float [N_seq, T_max], NaN = padding
    seq_id: np.ndarray  # int [N_seq]
    source: str


def save_token_losses(run_dir: str | Path, loss: Any, seq_id: Any = None, **extra: Any) -> Path:
    """Write ``run_dir/valid_token_losses.npz`` atomically (checked by the same rules the reader applies); `extra`
    arrays (e.g. ``src_len`` per sequence, the ``step`` validated) are stored beside ``loss``."""
    path = Path(run_dir) / TOKEN_LOSS_FILE
    arrays = {"loss": np.asarray(loss, dtype=np.float32), **{k: np.asarray(v) for k, v in extra.items()}}
    if seq_id is not None:
        arrays["seq_id"] = np.asarray(seq_id, dtype=np.int64)
    _check(arrays, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    return TokenLosses(loss, seq_id, source)


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


def _weights(n_seq: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_seq] multiplicities of a bootstrap over sequences (resampled sums become matrix products)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_seq, size=(n_boot, n_seq)) + n_seq * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n_seq).reshape(n_boot, n_seq).astype(float)


def _means(loss: np.ndarray, w: np.ndarray) -> np.ndarray:
    real = np.isfinite(loss)
    with np.errstate(all="ignore"):
        return (w @ np.where(real, loss, 0.0)) / (w @ real.astype(float))


@dataclass
class PositionCurve:
    """A run's loss (or a log ratio) by position; ``lo``/``hi`` are None without per-token losses."""

    mean: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None
    n_seqs: np.ndarray | None  # sequences reaching each position
    boot: np.ndarray | None = None  # [n_boot, T] bootstrap replicates
    paired: bool = False
    source: str = ""


def _curve(point: np.ndarray, boot: np.ndarray, n: np.ndarray, min_seqs: int, **kw: Any) -> PositionCurve:
    with warnings.catch_warnings():  # all-NaN columns stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    few = n < min_seqs
    lo[few], hi[few] = np.nan, np.nan
    return PositionCurve(point, lo, hi, n, boot, **kw)


def loss_by_position_ci(
    tl: TokenLosses, n_boot: int = N_BOOT, seed: int = 0, min_seqs: int = MIN_SEQS
) -> PositionCurve:
    """Mean loss at each position over the sequences reaching it, with a 95 % percentile CI from resampling
    sequences (no CI where fewer than ``min_seqs`` sequences reach the position)."""
    n = np.isfinite(tl.loss).sum(axis=0)
    point = _means(tl.loss, np.ones((1, len(tl.loss))))[0]
    boot = _means(tl.loss, _weights(len(tl.loss), n_boot, seed))
    return _curve(point, boot, n, min_seqs, source=tl.source)


def paired_log_ratio(
    a: TokenLosses, b: TokenLosses, n_boot: int = N_BOOT, seed: int = 0, min_seqs: int = MIN_SEQS
) -> PositionCurve:
    """rho(t) = log(L_a(t) / L_b(t)) with a *paired* bootstrap: both runs are resampled with the same
    sequences, so the sequences' shared difficulty cancels. Needs the same validation sequences on both sides."""
    common = np.intersect1d(a.seq_id, b.seq_id)
    if len(common) < len(a.seq_id) or len(common) < len(b.seq_id):
        raise ValueError(
            f"{a.source} and {b.source}: validation sequences differ ({len(a.seq_id)} vs {len(b.seq_id)} "
            f"sequences, {len(common)} shared): cannot pair"
        )
    la = a.loss[np.argsort(a.seq_id)]
    lb = b.loss[np.argsort(b.seq_id)]
    t = min(la.shape[1], lb.shape[1])
    la, lb = la[:, :t], lb[:, :t]
    if not np.array_equal(np.isfinite(la), np.isfinite(lb)):
        raise ValueError(f"{a.source} and {b.source}: target lengths differ for the same seq_id: cannot pair")
    w = np.vstack([np.ones((1, len(la))), _weights(len(la), n_boot, seed)])
    with np.errstate(all="ignore"):
        rho = np.log(_means(la, w)) - np.log(_means(lb, w))
    return _curve(rho[0], rho[1:], np.isfinite(la).sum(axis=0), min_seqs, paired=True, source=a.source)


def mean_loss_by_position(records: Sequence[Any]) -> np.ndarray:
    """Position-wise mean of ``record.loss_by_position`` over runs, cut to the shortest curve (NaN-aware): the
    fallback for records without per-token losses."""
    curves = [r.loss_by_position for r in records if r.loss_by_position]
    if not curves:
        return np.array([])
    t = min(len(c) for c in curves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.array([c[:t] for c in curves], dtype=float), axis=0)


def run_position_curve(
    run_dir: str | Path, record: Any, n_boot: int = N_BOOT, seed: int = 0
) -> PositionCurve:
    """The run's loss by position: with CIs from its npz, else its record's curve without CIs."""
    tl = load_token_losses(run_dir)
    if tl is not None:
        return loss_by_position_ci(tl, n_boot, seed)
    return PositionCurve(mean_loss_by_position([record]), None, None, None, source="record.loss_by_position")
