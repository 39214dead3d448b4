"""How much each model gains from distant context: its validation loss in log-spaced position bands, and the gain
from the band [16, 64) to the last band (positions >= 256 at a context of 512), with a bootstrap CI over validation
sequences.

The plateau test (plateau.py) asks whether a recurrent model gains *less* than the Transformer after some t*. It
can only find that where the Transformer itself still gains: if the reference's own loss is flat beyond t, no
plateau beyond t is detectable at any noise level. This table says where that is, per size, so a report that
finds no bend can say why and how far the scale is from one where a bend could show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.positions import N_BOOT
from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.run_record import RunRecord

EDGES = (0, 1, 4, 16, 64, 256, 1024, 4096)  # band [EDGES[i], EDGES[i+1]) of 0-based target positions
NEAR = (16, 64)  # the gain is measured from this band ...
MIN_FAR = 256  # ... to the last band, which must start at or beyond this position


@dataclass
class ContextGain:
    arch: str
    n: int  # non-embedding parameters
    seeds: int
    bands: list[tuple[int, int]]  # [lo, hi) actually covered (the last one cut at the sequence length)
    loss: list[float]  # mean loss per band (over sequences, seeds averaged per sequence)
    gain: float  # loss(NEAR) - loss(last band): > 0 = still gaining from context beyond NEAR
    ci: tuple[float, float]  # 95 % percentile CI of the gain over validation sequences


def _bands(width: int) -> list[tuple[int, int]]:
    return [(lo, min(hi, width)) for lo, hi in zip(EDGES, EDGES[1:], strict=False) if lo < width]


def context_gain(loss: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[list[float], float, tuple]:
    """loss Float[N_seq, T] (NaN = padding) -> (mean loss per band, gain NEAR -> last band, its 95 % CI).

    Each sequence's band means are taken first, so the bootstrap resamples whole sequences (their positions are
    correlated); a band mean over sequences weights each sequence by its tokens in the band."""
    bands = _bands(loss.shape[1])
    sums = np.stack([np.nansum(loss[:, lo:hi], axis=1) for lo, hi in bands], axis=1)  # [N_seq, bands]
    counts = np.stack([np.isfinite(loss[:, lo:hi]).sum(axis=1) for lo, hi in bands], axis=1)
    near, far = bands.index(NEAR), len(bands) - 1

    def stats(w: np.ndarray) -> np.ndarray:  # w [B, N_seq] sequence weights -> [B, bands]
        return (w @ sums) / np.maximum(w @ counts, 1)

    point = stats(np.ones((1, len(loss))))[0]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(loss), np.full(len(loss), 1 / len(loss)), size=n_boot).astype(float)
    boot = stats(draws)
    gains = boot[:, near] - boot[:, far]
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return [float(v) for v in point], float(point[near] - point[far]), (float(lo), float(hi))


def context_gains(sweep_dir: str | Path | RunFiles, records: Sequence[RunRecord]) -> list[ContextGain]:
    """One row per (arch, size): its runs' per-token losses averaged over seeds (the same validation sequences),
    for the sizes whose sequences reach 2 * MIN_FAR. [] when no run saved per-token losses that long.
    ``sweep_dir``: the sweep's directory or its `RunFiles`."""
    files = run_files_of(sweep_dir)
    groups: dict[tuple[str, int], list[np.ndarray]] = {}
    for r in records:
        tokens = files.token_losses(r.run)
        if tokens is not None and tokens.loss.shape[1] >= 2 * MIN_FAR:  # a last band of >= MIN_FAR positions
            groups.setdefault((r.arch, r.non_embedding_params), []).append(tokens.loss)
    rows = []
    for (arch, n), losses in sorted(groups.items()):
        if len({x.shape for x in losses}) != 1:
            continue  # seeds scored on different sequences cannot be averaged per sequence
        band_loss, gain, ci = context_gain(np.nanmean(np.stack(losses), axis=0))
        rows.append(ContextGain(arch, n, len(losses), _bands(losses[0].shape[1]), band_loss, gain, ci))
    return rows
