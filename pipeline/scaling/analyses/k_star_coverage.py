"""Does K*'s interval hold the true K*? Checked where the answer is known, at a study's own design.

An interval not checked for coverage is a hint. Two checks, both planting a bend (L falls ``gain`` nats per e-fold
of K up to a context K* of the grid, ``gain_after`` after it) and counting how often `k_star` finds it and how often
its interval holds it:

- ``k_star_coverage``: fully synthetic studies (``simulate_truncation``) at a design (clusters, windows, positions,
  contexts); for planning a study before it has data.
- ``k_star_coverage_on_data``: the study's own per-token losses with their measured mean curve replaced by the
  planted one, each simulated study a resample of whole clusters (drawn with replacement, each draw its own
  cluster). The noise is the data's, token by token: its spread, its correlation across K and within a cluster.
  What it cannot check is a model that bends smoothly instead of at one K (the planted bend is sharp).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.scaling.analyses.k_star import HALF_OCTAVES, KStar, k_star, simulated_k_stars
from pipeline.scaling.analyses.plateau import ALPHA
from pipeline.scaling.fits.cluster_bootstrap import cluster_codes


@dataclass
class KStarCoverage:
    """``planted``: the true K*; ``detected``: the share of studies in which the test found a bend; ``covered``: the
    share whose interval holds the planted K* (a missed bend counts as not covered); ``covered_if_detected``: the
    same among those found. ``design["noise"]`` says whose noise: "synthetic noise" or "the study's own tokens as noise"."""

    planted: int
    detected: float
    covered: float
    covered_if_detected: float
    n_sims: int
    design: dict[str, Any]

    def describe(self) -> str:
        d = self.design
        return (
            f"planted K* = {self.planted} (slope {-d['gain']:.3g} nats per e-fold before it, "
            f"{-d['gain_after']:.3g} after; {d['noise']}): bend found in {self.detected:.0%}, interval holds "
            f"the planted K* in {self.covered:.0%} of {self.n_sims} studies ({self.covered_if_detected:.0%} of "
            f"those found) at {d['n_clusters']} clusters, {d['n_sequences']} sequences, {d['n_positions']} "
            f"positions, {len(d['contexts'])} contexts"
        )


def _check_plant(planted: int, contexts: Sequence[int], gain: float, gain_after: float) -> None:
    if planted not in list(contexts):
        raise ValueError(f"k_star_coverage: planted K* {planted} is not one of the contexts {list(contexts)}")
    if not gain > max(gain_after, 0.0):
        raise ValueError(
            f"k_star_coverage: gain must be > 0 nats per e-fold (a falling L(K)) and > gain_after (a bend up), "
            f"got {gain} and {gain_after}"
        )


def _coverage(found: list[KStar], planted: int, design: dict[str, Any]) -> KStarCoverage:
    hit = sum(f.ci is not None for f in found)
    holds = sum(f.ci is not None and f.ci[0] <= planted <= f.ci[1] for f in found)
    n = len(found)
    return KStarCoverage(planted, hit / n, holds / n, holds / hit if hit else float("nan"), n, design)


def planted_curve(contexts: Sequence[int], planted: int, gain: float, gain_after: float) -> np.ndarray:
    """L(K) - L(K_max) of the planted bend at each context."""
    x = np.log(np.asarray(contexts, dtype=float))
    xp = np.log(planted)
    return gain * np.maximum(0.0, xp - x) + gain_after * (x[-1] - np.maximum(x, xp))


def k_star_coverage(planted: int, n_clusters: int, n_sequences: int, contexts: Sequence[int] = HALF_OCTAVES,
                    n_positions: int = 256, gain: float = 0.05, n_sims: int = 100, n_boot: int = 199,
                    alpha: float = ALPHA, seed: int = 0, gain_after: float = 0.0,
                    **noise: float) -> KStarCoverage:  # fmt: skip
    """Coverage on synthetic studies at a design (``simulate_truncation``'s noise, keyword ``noise`` overrides)."""
    _check_plant(planted, contexts, gain, gain_after)
    found = simulated_k_stars(n_clusters, n_sequences, contexts, n_positions, n_sims, n_boot, alpha, seed,
                               gain=gain, plateau_at=planted, gain_after=gain_after, **noise)  # fmt: skip
    design = {"n_clusters": n_clusters, "n_sequences": n_sequences, "n_positions": n_positions,
              "contexts": list(contexts), "n_boot": n_boot, "gain": gain, "gain_after": gain_after,
              "noise": "synthetic noise", **noise}  # fmt: skip
    return _coverage(found, planted, design)


def k_star_coverage_on_data(loss: np.ndarray, contexts: Sequence[int], cluster_ids: Any, planted: int, gain: float,
                            gain_after: float = 0.0, first_position: int = 0, n_sims: int = 100,
                            n_boot: int = 199, alpha: float = ALPHA, seed: int = 0) -> KStarCoverage:  # fmt: skip
    """Coverage on the study's own tokens: per-token losses ``loss`` [K, windows, positions] (NaN = not scored) with
    the measured mean curve swapped for the planted one, whole clusters resampled for each simulated study."""
    _check_plant(planted, contexts, gain, gain_after)
    loss = np.asarray(loss, dtype=float)[:, :, first_position:]
    measured = np.nanmean(loss.reshape(len(contexts), -1), axis=1)
    shifted = (
        loss - (measured - measured[-1] - planted_curve(contexts, planted, gain, gain_after))[:, None, None]
    )
    codes, n_clusters = cluster_codes(cluster_ids)
    members = [np.flatnonzero(codes == c) for c in range(n_clusters)]
    rng = np.random.default_rng(seed)
    found = []
    for i in range(n_sims):
        drawn = rng.integers(0, n_clusters, n_clusters)
        rows = np.concatenate([members[c] for c in drawn])
        ids = np.concatenate(
            [np.full(len(members[c]), j) for j, c in enumerate(drawn)]
        )  # each draw its own cluster
        found.append(
            k_star(shifted[:, rows], contexts, ids, "cluster", n_boot=n_boot, seed=seed + i, alpha=alpha)
        )
    n_positions = int(np.isfinite(loss[-1]).any(axis=0).sum())
    design = {"n_clusters": n_clusters, "n_sequences": loss.shape[1], "n_positions": n_positions,
              "contexts": list(contexts), "n_boot": n_boot, "gain": gain, "gain_after": gain_after,
              "noise": "the study's own tokens as noise"}  # fmt: skip
    return _coverage(found, planted, design)
