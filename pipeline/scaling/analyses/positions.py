"""Loss by target position with 95 % CIs, from per-token validation losses, and the arch/reference log ratio.

The per-token losses are each run's ``valid_token_losses.npz`` (`records.token_losses`). The sequence, not the token, is the resampling unit: tokens of one sequence share its difficulty. Two runs
scored on the same sequences are compared with a *paired* bootstrap (the same resampled sequences on both
sides). Records written before this file existed fall back to ``record.loss_by_position``, without CIs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.token_losses import TokenLosses

N_BOOT = 999  # resamples of validation sequences (cheap: one matrix product per side)
MIN_SEQS = 20  # positions reached by fewer sequences get no CI and are left out of the bend test


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
    files: str | Path | RunFiles, record: Any, n_boot: int = N_BOOT, seed: int = 0
) -> PositionCurve:
    """The run's loss by position (``files``: its sweep's run files, or the sweep directory): with CIs from its npz,
    else its record's curve without CIs."""
    tl = run_files_of(files).token_losses(record.run)
    if tl is not None:
        return loss_by_position_ci(tl, n_boot, seed)
    return PositionCurve(mean_loss_by_position([record]), None, None, None, source="record.loss_by_position")
