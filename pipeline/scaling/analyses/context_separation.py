"""Whether two architectures use distant context differently, and how large an evaluation would tell.

K* per architecture (``k_star.py``) says where each model stops gaining; two K* intervals that overlap do not say
the models use context alike, and their widths do not scale in any simple way with more data. The direct, paired
quantity is the *gain gap* on the same tokens:

    D(K) = [L_a(K) - L_a(K_max)] - [L_ref(K) - L_ref(K_max)],

how much more architecture a loses than the reference when its context is cut from K_max to K, i.e. how much more
of the tokens beyond K it uses. Kaplan et al. (2020, Fig. 7): an LSTM's loss stops improving after < 100 tokens
while a Transformer's keeps falling to 1,024, so an LSTM against a Transformer reference has D(128) < 0. The
interval resamples whole clusters (``fits/cluster_bootstrap.paired_difference``), the same ones for both models.

Where the interval covers 0, ``clusters_needed`` is how many held-out clusters of this kind would separate a true
gap of the measured size with 80 % power (two-sided 5 %): n (z_0.975 + z_0.8)^2 (se / |D|)^2, se = half-width /
z_0.975, assuming the standard error falls as 1 / sqrt(clusters), as for a mean of independent clusters. It is an
extrapolation from the measured width and estimate (a gap measured near 0 asks for very many clusters: that is the
answer "not separable at any affordable size", not a number to trust to two digits); the unit tests check its power
on planted gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from pipeline.scaling.fits.cluster_bootstrap import N_BOOT, ClusterInterval, paired_difference
from pipeline.scaling.fits.intervals import LEVEL

POWER = 0.8


@dataclass
class GainGap:
    """D(K) of ``arch`` against ``reference`` at each K below K_max, and the clusters that would separate it."""

    arch: str
    reference: str
    contexts: list[int]  # the K < K_max the gap is measured at
    interval: ClusterInterval  # D(K) per context, with its cluster-bootstrap interval
    clusters_needed: np.ndarray  # per context: held-out clusters for 80 % power at the measured gap

    def separated(self) -> np.ndarray:
        """Per context: True where the interval excludes 0."""
        return (self.interval.lo > 0) | (self.interval.hi < 0)


def clusters_to_separate(
    estimate: Any, lo: Any, hi: Any, n_clusters: int, level: float = LEVEL, power: float = POWER
) -> np.ndarray:
    """Clusters at which an interval of this width, shrinking as 1/sqrt(clusters), separates a true effect of size
    ``estimate`` from 0 with probability ``power`` (inf where the estimate is 0)."""
    est, lo, hi = (np.asarray(x, dtype=float) for x in (estimate, lo, hi))
    z = norm.ppf(0.5 + level / 2)
    se = (hi - lo) / (2 * z)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = n_clusters * ((z + norm.ppf(power)) * se / np.abs(est)) ** 2
    return np.where(np.abs(est) > 0, need, np.inf)


def gain_gap(
    arch: str,
    reference: str,
    loss: np.ndarray,
    reference_loss: np.ndarray,
    contexts: Sequence[int],
    cluster_ids: Any,
    unit: str,
    first_position: int = 0,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> GainGap:
    """D(K) from per-token truncation losses [K, windows, positions] of two models on the same tokens (NaN = not
    scored; ``contexts`` increasing, the last K_max)."""
    a = np.asarray(loss, dtype=float)[:, :, first_position:]
    r = np.asarray(reference_loss, dtype=float)[:, :, first_position:]
    if a.shape != r.shape or a.shape[0] != len(contexts) or len(contexts) < 2:
        raise ValueError(
            f"gain_gap: {arch} {a.shape} and {reference} {r.shape} must score the same tokens at the same "
            f"{len(contexts)} (>= 2) contexts"
        )
    ci = paired_difference(
        (a - a[-1:])[:-1], (r - r[-1:])[:-1], cluster_ids, unit, n_boot=n_boot, seed=seed, method="percentile"
    )
    need = clusters_to_separate(ci.estimate, ci.lo, ci.hi, ci.n_clusters, ci.level)
    return GainGap(arch, reference, [int(k) for k in contexts[:-1]], ci, need)


def describe_need(gap: GainGap, i: int, tokens_per_cluster: float) -> str:
    """One table cell: 'separated', or the clusters (and validation tokens) that would separate D(K_i)."""
    if gap.separated()[i]:
        return "separated"
    need = float(gap.clusters_needed[i])
    if not np.isfinite(need) or need > 1e6:
        return "no gap measured"
    tokens = float(f"{need * tokens_per_cluster:.2g}")  # two significant digits: an extrapolation
    return f"~{need:,.0f} {gap.interval.unit}s (~{tokens:,.0f} tokens)"
