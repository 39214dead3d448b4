"""Cluster bootstrap: whole clusters resampled; coverage where a window bootstrap undercovers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scaling.fits.cluster_bootstrap import (
    cluster_bootstrap,
    cluster_weights,
    paired_difference,
    token_sums,
)


def test_draws_whole_clusters() -> None:
    books = np.array(["gen", "gen", "gen", "exo", "exo", "lev", "num", "num", "num", "num"])
    w = cluster_weights(books, 500, np.random.default_rng(0))
    assert w.shape == (500, 10)
    for name in np.unique(books):  # every window of a cluster comes with the same multiplicity
        members = w[:, books == name]
        assert (members == members[:, :1]).all()
    per_cluster = np.stack([w[:, books == name][:, 0] for name in np.unique(books)], axis=1)
    assert (per_cluster.sum(axis=1) == 4).all()  # 4 clusters drawn per resample, counted with repeats
    assert (per_cluster == 0).any() and (
        per_cluster >= 2
    ).any()  # with replacement: some left out, some twice
    # each cluster is drawn 4 * 1/4 = 1 time on average
    assert per_cluster.mean(axis=0) == pytest.approx(np.ones(4), abs=0.15)


def _clustered(rng: np.random.Generator, n_clusters: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    """Window means with a strong shared cluster effect (sd 1) and small window noise (sd 0.3); truth 0."""
    effect = rng.normal(0, 1.0, n_clusters)
    ids = np.repeat(np.arange(n_clusters), per)
    return effect[ids] + rng.normal(0, 0.3, len(ids)), ids


def test_cluster_interval_covers_where_window_bootstrap_undercovers() -> None:
    rng = np.random.default_rng(7)
    hits = {"cluster": 0, "cluster_pct": 0, "window": 0}
    reps = 200
    for r in range(reps):
        x, ids = _clustered(rng, 30, 5)
        bca = cluster_bootstrap(x, ids, "book", n_boot=499, seed=r)
        pct = cluster_bootstrap(x, ids, "book", n_boot=499, seed=r, method="percentile")
        win = cluster_bootstrap(x, np.arange(len(x)), "window", n_boot=499, seed=r, method="percentile")
        hits["cluster"] += bool(bca.lo[0] <= 0 <= bca.hi[0])
        hits["cluster_pct"] += bool(pct.lo[0] <= 0 <= pct.hi[0])
        hits["window"] += bool(win.lo[0] <= 0 <= win.hi[0])
    cover = {k: v / reps for k, v in hits.items()}
    assert cover["cluster"] >= 0.9 and cover["cluster_pct"] >= 0.9, cover
    assert cover["window"] < 0.75 and cover["window"] < cover["cluster"] - 0.15, cover
    assert (bca.unit, bca.n_clusters, bca.n_windows) == ("book", 30, 150)
    assert "resamples of 30 books (whole clusters, 150 windows)" in bca.describe()


def test_paired_difference_cancels_shared_difficulty() -> None:
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(12), 4)
    difficulty = rng.gamma(2.0, 2.0, (48, 64))  # shared by both models, token by token
    a = difficulty + 0.05 + rng.normal(0, 0.02, (48, 64))
    b = difficulty + rng.normal(0, 0.02, (48, 64))
    a[:, 60:] = np.nan  # tokens a did not score are left out on both sides
    paired = paired_difference(a, b, ids, "book", n_boot=299)
    sa, ca = token_sums(a)
    sb, cb = token_sums(b)
    unpaired_a = cluster_bootstrap(sa, ids, "book", ca, n_boot=299)
    assert paired.estimate[0] == pytest.approx(0.05, abs=0.01)
    assert paired.lo[0] < 0.05 < paired.hi[0]
    assert paired.hi[0] - paired.lo[0] < 0.05 * (unpaired_a.hi[0] - unpaired_a.lo[0])
    # per-context columns: [k, n, T] -> one interval per k
    sums, counts = token_sums(np.stack([a, b]))
    assert sums.shape == (48, 2) and counts[0].tolist() == [60, 64]
    two = cluster_bootstrap(sums, ids, "book", counts, n_boot=99)
    assert two.estimate.shape == (2,) and two.samples.shape == (99, 2)
    # two models' truncation losses [k, n, T]: one paired interval per context length
    by_k = paired_difference(np.stack([a, a + 0.1]), np.stack([b, b]), ids, "book", n_boot=99)
    assert by_k.estimate == pytest.approx([0.05, 0.15], abs=0.01)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="3 given for 4 windows"):
        cluster_bootstrap(np.ones(4), [0, 0, 1], "book")
    with pytest.raises(ValueError, match="one book only"):
        cluster_bootstrap(np.ones(4), [0, 0, 0, 0], "book")
    with pytest.raises(ValueError, match="not the same tokens"):
        paired_difference(np.ones((2, 3)), np.ones((2, 4)), [0, 1], "book")
