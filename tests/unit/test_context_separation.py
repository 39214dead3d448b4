"""The gain gap D(K) between two models on the same tokens, and the clusters that would separate it: recovered on
planted gaps (an arch that stops gaining at a known K against one that keeps gaining), and the "clusters needed"
extrapolation checked for the power it promises."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scaling.analyses.context_separation import clusters_to_separate, describe_need, gain_gap

KS = (8, 32, 128, 256, 512)


def _pair(rng: np.random.Generator, n_clusters: int, plateau: int | None, gain: float, positions: int = 32,
          per_cluster: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(arch, reference) losses [K, windows, positions] on the same tokens, cluster ids. The reference gains
    ``gain`` per unit log K up to K_max; the arch the same up to ``plateau``, then nothing. Gains vary by cluster
    (independently per model) and every token has its own noise at each K."""
    ids = np.repeat(np.arange(n_clusters), per_cluster)
    n = len(ids)
    base = 5 + rng.normal(0, 0.3, n_clusters)[ids, None] + rng.gamma(2.0, 1.0, (n, positions))
    ks = np.log(np.asarray(KS, dtype=float))

    def model(reach: np.ndarray) -> np.ndarray:
        g = gain * (1 + 0.5 * rng.normal(size=n_clusters))[ids]
        noise = rng.normal(0, 0.3, (len(KS), n, positions))
        return base[None] + g[None, :, None] * (reach.max() - reach)[:, None, None] + noise

    arch = model(np.minimum(ks, np.log(plateau)) if plateau else ks)
    return arch, model(ks), ids


def true_gap(plateau: int, gain: float) -> np.ndarray:
    """D(K) for K < K_max: the arch's gain minus the reference's, -gain log(K_max / max(K, plateau))."""
    return np.array([-gain * np.log(KS[-1] / max(k, plateau)) for k in KS[:-1]])


def test_a_planted_plateau_is_recovered_and_separated() -> None:
    arch, ref, ids = _pair(np.random.default_rng(0), 40, plateau=32, gain=0.05)
    gap = gain_gap("lstm", "transformer", arch, ref, KS, ids, "chapter", n_boot=299)
    want = true_gap(32, 0.05)
    assert gap.contexts == list(KS[:-1]) and gap.interval.n_clusters == 40
    assert np.all(gap.interval.lo <= want) and np.all(want <= gap.interval.hi)
    assert gap.separated()[:3].all()  # -0.14 at K <= 32, -0.069 at 128: resolved with 40 clusters
    assert describe_need(gap, 0, 2000) == "separated"
    same, ref2, ids2 = _pair(np.random.default_rng(1), 40, plateau=None, gain=0.05)  # no gap at all
    null = gain_gap("lstm", "transformer", same, ref2, KS, ids2, "chapter", n_boot=299)
    assert not null.separated().any()


def test_the_clusters_needed_deliver_the_promised_power() -> None:
    """A gap too small for a 20-cluster pilot (19 chapters in the CPU study): the clusters it asks for (at the true
    gap, the pilot's width) separate the gap in ~80 % of fresh studies of that size, a quarter of them rarely.
    (Pilots of 10 clusters ask for ~2x too many: their bootstrap width is itself noisy.)"""
    gain, k = 0.006, 1  # D(32) = -0.006 log(16) = -0.017
    arch, ref, ids = _pair(np.random.default_rng(2), 20, plateau=32, gain=gain)
    pilot = gain_gap("a", "ref", arch, ref, KS, ids, "chapter", n_boot=299)
    assert not pilot.separated()[k]
    want = true_gap(32, gain)[k]
    need = int(np.ceil(clusters_to_separate(want, pilot.interval.lo[k], pilot.interval.hi[k], 20)))
    assert 40 < need < 400

    def power(n_clusters: int, sims: int = 40) -> float:
        hits = 0
        for s in range(sims):
            a, r, i = _pair(np.random.default_rng(100 + s), n_clusters, plateau=32, gain=gain)
            hits += bool(gain_gap("a", "ref", a, r, KS, i, "chapter", n_boot=199, seed=s).separated()[k])
        return hits / sims

    assert 0.6 <= power(need) <= 0.97
    assert power(need // 4) <= 0.45


def test_clusters_needed_formula_and_errors() -> None:
    # se = 0.02 / 1.96 per side at 19 clusters; effect 0.01 -> 19 (2.80 * 0.0102 / 0.01)^2
    got = clusters_to_separate([0.01, 0.0], [-0.01, -0.02], [0.03, 0.02], 19)
    assert got[0] == pytest.approx(19 * (2.8016 * 0.02 / 1.95996 / 0.01) ** 2, rel=1e-3)
    assert np.isinf(got[1])
    with pytest.raises(ValueError, match="must score the same tokens"):
        gain_gap("a", "b", np.ones((5, 3, 4)), np.ones((5, 3, 5)), KS, [0, 1, 2], "chapter")
