"""Cluster bootstrap of per-token means: resample whole documents, not windows.

The LM validation windows are not independent: the windows of one held-out book share its vocabulary and style,
and the three translations of a book share its content, so a bootstrap over windows treats ~74 dependent windows
as 74 independent draws and its intervals are too narrow. Here every window carries a cluster id (e.g. the book,
the same id across its translations) and a resample draws clusters with replacement, each with *all* its windows
(Davison & Hinkley 1997, section 3.8; Field & Welsh 2007, "Bootstrapping clustered data"). A paired statistic
(model a minus model b on the same tokens) is computed per resample from the same drawn clusters.

The statistic is a ratio of weighted sums, a token mean: sum_w m_w s_w / sum_w m_w c_w with m_w the window's
multiplicity in the resample, s_w its loss sum and c_w its token count, so B resamples are one matrix product.
Intervals: percentile, or BCa with the acceleration from a leave-one-*cluster*-out jackknife, through
``intervals.bca_interval`` / ``intervals.percentile_interval``. The result names the cluster unit and its count,
which the report must print beside every interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.scaling.fits.intervals import LEVEL, bca_interval, percentile_interval

N_BOOT = 999
METHODS = ("percentile", "bca")


@dataclass
class ClusterInterval:
    """Per column: the point estimate, its interval and the resampled values; ``unit`` and ``n_clusters`` say what
    was resampled (e.g. "book", 12), ``n_windows`` how many windows they hold."""

    estimate: np.ndarray  # [p]
    lo: np.ndarray  # [p]
    hi: np.ndarray  # [p]
    samples: np.ndarray  # [n_boot, p]
    method: str
    unit: str
    n_clusters: int
    n_windows: int
    level: float = LEVEL

    def describe(self) -> str:
        """The line a report prints under a table of these intervals."""
        return (
            f"{int(round(100 * self.level))} % {self.method} intervals from {len(self.samples)} resamples of "
            f"{self.n_clusters} {self.unit}s (whole clusters, {self.n_windows} windows)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "method": self.method,
            "unit": self.unit,
            "n_clusters": self.n_clusters,
            "n_windows": self.n_windows,
            "n_boot": len(self.samples),
            "level": self.level,
        }


def cluster_codes(cluster_ids: Any) -> tuple[np.ndarray, int]:
    """Cluster ids of any hashable kind (book names, ints) -> (codes 0..C-1 per window, C)."""
    ids = np.asarray(cluster_ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"cluster ids must be one per window (a non-empty 1-D array), got shape {ids.shape}")
    _, codes = np.unique(ids, return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1


def cluster_draws(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, C] how many times each cluster is drawn in each resample (C draws with replacement)."""
    picks = rng.integers(0, n_clusters, size=(n_boot, n_clusters)) + n_clusters * np.arange(n_boot)[:, None]
    return np.bincount(picks.ravel(), minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)


def cluster_weights(cluster_ids: Any, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n_windows] multiplicity of each window: its cluster's draw count, so a drawn cluster comes with
    all its windows, as many times as it was drawn."""
    codes, n_clusters = cluster_codes(cluster_ids)
    return cluster_draws(n_clusters, n_boot, rng)[:, codes].astype(float)


def token_sums(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token losses [..., n_windows, T] (NaN = not scored) -> (loss sums, token counts), each [n_windows, ...]:
    the window is the row, any leading axes (e.g. context lengths) become columns."""
    loss = np.asarray(loss, dtype=float)
    real = np.isfinite(loss)
    sums, counts = np.where(real, loss, 0.0).sum(axis=-1), real.sum(axis=-1).astype(float)
    return np.moveaxis(sums, -1, 0), np.moveaxis(counts, -1, 0)


def _ratio(w: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return (w @ sums) / (w @ counts)


def cluster_bootstrap(
    sums: np.ndarray,
    cluster_ids: Any,
    unit: str,
    counts: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    method: str = "bca",
    level: float = LEVEL,
) -> ClusterInterval:
    """Interval of the token mean sum(sums) / sum(counts) (per column of ``sums`` [n_windows] or [n_windows, p];
    ``counts`` default 1 per window: the window mean), resampling whole clusters of windows."""
    if method not in METHODS:
        raise ValueError(f"cluster_bootstrap method={method!r}: must be one of {METHODS}")
    sums = np.asarray(sums, dtype=float)
    column = sums.ndim == 1
    sums = sums[:, None] if column else sums
    counts = np.ones_like(sums) if counts is None else np.asarray(counts, dtype=float).reshape(sums.shape)
    codes, n_clusters = cluster_codes(cluster_ids)
    if len(codes) != len(sums):
        raise ValueError(f"cluster ids: {len(codes)} given for {len(sums)} windows")
    if n_clusters < 2:
        raise ValueError(f"cluster_bootstrap: one {unit} only; resampling needs at least 2")
    estimate = _ratio(np.ones(len(sums)), sums, counts)
    samples = _ratio(cluster_weights(codes, n_boot, np.random.default_rng(seed)), sums, counts)
    if method == "bca":
        per_s = np.stack([sums[codes == c].sum(axis=0) for c in range(n_clusters)])  # [C, p]
        per_c = np.stack([counts[codes == c].sum(axis=0) for c in range(n_clusters)])
        with np.errstate(all="ignore"):
            jack = (per_s.sum(axis=0) - per_s) / (per_c.sum(axis=0) - per_c)  # leave one cluster out
        lo, hi = bca_interval(estimate, samples, jack, level)
    else:
        lo, hi = percentile_interval(samples, level)
    return ClusterInterval(
        estimate, np.asarray(lo), np.asarray(hi), samples, method, unit, n_clusters, len(sums), level
    )


def paired_difference(
    loss_a: np.ndarray,
    loss_b: np.ndarray,
    cluster_ids: Any,
    unit: str,
    n_boot: int = N_BOOT,
    seed: int = 0,
    method: str = "bca",
    level: float = LEVEL,
) -> ClusterInterval:
    """Mean per-token loss of a minus b over the tokens both scored ([..., n_windows, T] each, rows aligned),
    with both sides resampled by the same drawn clusters (the shared difficulty of the tokens cancels)."""
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(
            f"paired_difference: loss shapes differ ({a.shape} vs {b.shape}): not the same tokens"
        )
    both = np.isfinite(a) & np.isfinite(b)
    sums, counts = token_sums(np.where(both, a - b, np.nan))
    return cluster_bootstrap(sums, cluster_ids, unit, counts, n_boot, seed, method, level)
