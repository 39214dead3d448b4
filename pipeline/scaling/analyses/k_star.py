"""K*: the context length beyond which a model stops gaining, from its truncation curve L(K).

L(K) is the mean loss of the same late tokens given only their last K tokens (training/truncation_eval.py). While
a model uses more context, L falls roughly linearly in log K; where it stops, the slope of L in log K rises
towards 0: an upward bend, which is what the calibrated bend test of plateau.py looks for (there in the log
ratio of two architectures by position). Here it is applied to L(K) itself, with x = log K (the test's x is
log(position + 1), so the contexts are passed as positions K - 1). Its null law: the test statistic ignores any
straight line in log K, so each held-out document's (cluster's) share of L(K), minus its own line, is noise under
"no bend"; flipping the clusters' signs at random (every pattern when there are few) is a randomization test that
assumes only independent clusters with symmetric deviations. The plain resampling null of plateau.py
(``null="bootstrap"``) was liberal with few clusters: on null curves at the study's design (74 sequences, 256
positions, contexts 8..256 in half octaves, alpha 0.05, 1000 simulations each) it called a plateau in 12.6 % / 9.6 %
/ 8.4 % of them at 4 / 6 / 12 clusters; the sign flips in 0.0 % / 4.2 % / 5.5 % (4.6 % at 37). With 4 clusters
(the 4 held-out books) no test can reject at 0.05 this way: 16 patterns, p >= 2/17. The interval of L(K) and of
K* come from resampling whole clusters (cluster_bootstrap.py), the same drawn clusters at every K.

``false_plateau_rate`` measures how often the test calls a plateau on null curves (a gain that continues
linearly in log K) simulated token by token at a given design (clusters, sequences, positions, contexts), through
the same path as the study's data: per-token losses -> window sums -> cluster bootstrap -> bend test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.scaling.analyses.plateau import ALPHA, MIN_SIDE, BendTest, hinge_bend_test
from pipeline.scaling.fits.cluster_bootstrap import cluster_bootstrap, cluster_codes, token_sums

N_BOOT = 999
NULLS = ("sign_flip", "bootstrap")
# half-octave contexts 8..512: 13 points, so 4 on each side of a breakpoint still leave 6 candidates
HALF_OCTAVES = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512)


def min_contexts(min_side: int = MIN_SIDE) -> int:
    """The fewest contexts the bend test can use: ``min_side`` on each side of one breakpoint (8 at the default).
    An octave grid 8..512 has 7: it gives L(K) but no K*."""
    return 2 * min_side


def too_few_contexts(n_contexts: int, min_side: int = MIN_SIDE) -> str | None:
    """Why no K* can be tested on ``n_contexts`` contexts, naming the key to change; None when enough."""
    if n_contexts >= min_contexts(min_side):
        return None
    return (
        f"no K* test: the bend test needs >= {min_contexts(min_side)} contexts ({min_side} on each side of a "
        f"breakpoint) and the run scored {n_contexts}; score more with train.eval_contexts, e.g. the half octaves "
        f"{','.join(map(str, HALF_OCTAVES))}"
    )


@dataclass
class KStar:
    """``k_star``: the context after which L(K) bends up (None when the test does not reject); ``curve`` is L(K)
    with its cluster-bootstrap interval ``lo``/``hi`` (percentile), over ``n_clusters`` ``unit``s."""

    k_star: int | None
    ci: tuple[int, int] | None
    contexts: list[int]
    curve: list[float]
    lo: list[float]
    hi: list[float]
    unit: str
    n_clusters: int
    test: BendTest

    @property
    def reason(self) -> str:
        t = self.test
        if t.best_position is None:
            return t.reason
        best = t.best_position + 1
        if self.k_star is None:
            return f"no bend detectable (p = {t.p_value:.3g}; best candidate K = {best})"
        after = "" if t.slope_after_ci is None else f" [{t.slope_after_ci[0]:.3g}, {t.slope_after_ci[1]:.3g}]"
        return (
            f"'no bend' rejected (p = {t.p_value:.3g}): the slope of L in log K rises from {t.slope_before:.3g} "
            f"to {t.slope_after:.3g}{after} nats per e-fold after K* = {best} (95 % CI {self.ci[0]}-{self.ci[1]}, "
            f"{self.n_clusters} {self.unit}s resampled)"
        )

    def to_dict(self) -> dict[str, Any]:
        keys = ("k_star", "ci", "contexts", "curve", "lo", "hi", "unit", "n_clusters")
        return {**{k: getattr(self, k) for k in keys}, "reason": self.reason, "test": self.test.to_dict()}


def sign_flips(n_clusters: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """[B, C] Rademacher signs: all 2^C patterns when that is at most ``n_draws`` (an exact randomization
    distribution; all-plus, the observed curve, is one of them), else ``n_draws`` random ones."""
    if 2**n_clusters <= n_draws:
        return 1.0 - 2.0 * ((np.arange(2**n_clusters)[:, None] >> np.arange(n_clusters)) & 1)
    return rng.choice([-1.0, 1.0], size=(n_draws, n_clusters))


def _as_context(position: int | None) -> int | None:
    return None if position is None else position + 1


def k_star(
    loss: np.ndarray,
    contexts: Sequence[int],
    cluster_ids: Any,
    unit: str,
    first_position: int = 0,
    n_boot: int = N_BOOT,
    seed: int = 0,
    alpha: float = ALPHA,
    min_side: int = MIN_SIDE,
    null: str = "sign_flip",
) -> KStar:
    """K* from per-token truncation losses ``loss`` [len(contexts), n_windows, T] (NaN = not scored), using the
    targets at or after ``first_position`` (e.g. ``Truncation.late_start``: every context cut to exactly K).

    ``null``: how the test's null law is drawn. "sign_flip" (default): each cluster's share of L(K) with a random
    sign (every pattern when 2^C <= n_boot), a randomization test that needs only independent clusters whose
    deviations from their own straight line in log K are symmetric; it cannot reject at alpha with fewer than
    log2(1 / alpha) + 1 clusters (5 at 0.05), which is the honest answer there. "bootstrap": the centred cluster
    resamples, as plateau.py does over sequences; liberal with few clusters (measured in `false_plateau_rate`)."""
    loss = np.asarray(loss, dtype=float)
    ks = np.asarray(contexts, dtype=int)
    if loss.ndim != 3 or loss.shape[0] != len(ks):
        raise ValueError(f"k_star: loss must be [{len(ks)} contexts, windows, positions], got {loss.shape}")
    if np.any(np.diff(ks) <= 0):
        raise ValueError(f"k_star: contexts must increase, got {ks.tolist()}")
    sums, counts = token_sums(loss[:, :, first_position:])
    ci = cluster_bootstrap(sums, cluster_ids, unit, counts, n_boot, seed, method="percentile")
    x = np.log(ks)
    if null == "bootstrap":
        test = hinge_bend_test(ci.estimate, ci.samples, positions=ks - 1, alpha=alpha, min_side=min_side)
    elif null == "sign_flip":
        codes, n_clusters = cluster_codes(cluster_ids)
        share = np.stack([sums[codes == c].sum(axis=0) for c in range(n_clusters)]) / counts.sum(
            axis=0
        )  # [C, K]
        # each cluster's own straight line in log K is invisible to the test (its hinge scores are orthogonal to
        # [1, x]); removing it first leaves the flips' variance, the test's weights, to the deviations alone
        design = np.stack([np.ones_like(x), x], axis=1)
        resid = share - share @ (design @ np.linalg.pinv(design))  # P is symmetric
        flips = sign_flips(n_clusters, n_boot, np.random.default_rng(seed))
        # t*'s CI: the best breakpoints of the resampled clusters' curves, weighted as the test weighs L(K)
        test = hinge_bend_test(ci.estimate, flips @ resid, positions=ks - 1, alpha=alpha, min_side=min_side,
                               replicates=ci.samples)  # fmt: skip
    else:
        raise ValueError(f"k_star null={null!r}: must be one of {NULLS}")
    few = too_few_contexts(len(ks), min_side)
    if few is not None:
        test.reason = few
    at = _as_context(test.position)
    interval = None if test.ci is None else (test.ci[0] + 1, test.ci[1] + 1)
    return KStar(
        at,
        interval,
        ks.tolist(),
        ci.estimate.tolist(),
        ci.lo.tolist(),
        ci.hi.tolist(),
        unit,
        ci.n_clusters,
        test,
    )


def simulate_truncation(
    rng: np.random.Generator,
    n_clusters: int,
    n_sequences: int,
    contexts: Sequence[int],
    n_positions: int,
    gain: float = 0.05,
    plateau_at: int | None = None,
    token_sd: float = 0.3,
    cluster_sd: float = 0.02,
    gain_after: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token losses [len(contexts), n_sequences, n_positions] and cluster ids of a synthetic truncation study.

    L = base + g (log p - log min(K, p)) + g' (log K_max - log max(K, p)) + e, p = ``plateau_at``: base differs by
    cluster, window and token (shared by every K); the gain per unit log K, g, varies by cluster and by window around
    ``gain``, and after p it is ``gain_after`` (default 0: flat; a model that still gains a little); e is 0 at K_max and
    grows towards short contexts as a random walk over the context grid (sd ``token_sd`` per step per token,
    ``cluster_sd`` per step per cluster), so tokens and clusters deviate from the mean curve in correlated ways.
    ``plateau_at=None`` is the null: a gain that continues linearly in log K over the whole grid."""
    ks = np.asarray(contexts, dtype=float)
    ids = np.arange(n_sequences) % n_clusters
    base = (
        rng.normal(0, 0.3, n_clusters)[ids, None]
        + rng.normal(0, 0.2, (n_sequences, 1))
        + rng.gamma(2.0, 2.0, (n_sequences, n_positions))
    )
    g = gain * (1 + 0.5 * rng.normal(size=n_clusters)[ids] + 0.5 * rng.normal(size=n_sequences))
    reach = np.log(ks if plateau_at is None else np.minimum(ks, plateau_at))
    mean = g[None, :, None] * (reach.max() - reach)[:, None, None]
    if plateau_at is not None:
        mean = mean + gain_after * (np.log(ks.max()) - np.log(np.maximum(ks, plateau_at)))[:, None, None]
    steps = token_sd * rng.normal(size=(len(ks), n_sequences, n_positions))
    steps += cluster_sd * rng.normal(size=(len(ks), n_clusters))[:, ids, None]
    steps[-1] = 0.0
    walk = np.flip(np.cumsum(np.flip(steps, axis=0), axis=0), axis=0)  # e[K_max] = 0, wider at short K
    return base[None] + mean + walk, ids


@dataclass
class FalsePlateauRate:
    rate: float  # share of null simulations in which the test rejected "no bend"
    mc_se: (
        float  # Monte Carlo standard error of a rate at the nominal level: sqrt(alpha (1 - alpha) / n_sims)
    )
    n_sims: int
    alpha: float
    design: dict[str, Any]

    def describe(self) -> str:
        d = self.design
        few = too_few_contexts(len(d["contexts"]))
        if few is not None:  # a rate of 0 would say "a conservative test" of a test that never ran
            return few
        return (
            f"false-plateau rate {self.rate:.3f} (MC se {self.mc_se:.3f}, {self.n_sims} null simulations) at alpha "
            f"{self.alpha}: {d['n_clusters']} clusters, {d['n_sequences']} sequences, {d['n_positions']} positions, "
            f"{len(d['contexts'])} contexts"
        )


def false_plateau_rate(
    n_clusters: int,
    n_sequences: int,
    contexts: Sequence[int] = HALF_OCTAVES,
    n_positions: int = 256,
    n_sims: int = 200,
    n_boot: int = 199,
    alpha: float = ALPHA,
    seed: int = 0,
    null: str = "sign_flip",
    **noise: float,
) -> FalsePlateauRate:
    """How often `k_star` calls a plateau on null curves (``simulate_truncation`` with a continuing gain; keyword
    ``noise`` overrides its gain and spreads) at this design: the test's level for this estimator."""
    if n_sequences < n_clusters or n_clusters < 2:
        raise ValueError(
            f"false_plateau_rate: need 2 <= n_clusters <= n_sequences, got {n_clusters}, {n_sequences}"
        )
    design = {"n_clusters": n_clusters, "n_sequences": n_sequences, "n_positions": n_positions,
              "contexts": list(contexts), "n_boot": n_boot, "null": null, **noise}  # fmt: skip
    if too_few_contexts(len(contexts)) is not None:  # the test cannot run: no simulations to spend
        return FalsePlateauRate(float("nan"), float("nan"), 0, alpha, design)
    found = simulated_k_stars(n_clusters, n_sequences, contexts, n_positions, n_sims, n_boot, alpha, seed, null,
                               **noise)  # fmt: skip
    rate = sum(f.k_star is not None for f in found) / n_sims
    return FalsePlateauRate(rate, float(np.sqrt(alpha * (1 - alpha) / n_sims)), n_sims, alpha, design)


def simulated_k_stars(n_clusters: int, n_sequences: int, contexts: Sequence[int], n_positions: int, n_sims: int,
                       n_boot: int, alpha: float, seed: int, null: str = "sign_flip",
                       **simulation: Any) -> list[KStar]:  # fmt: skip
    """``k_star`` on ``n_sims`` synthetic studies (``simulate_truncation`` with ``simulation``'s keywords) at one
    design, through the same per-token path as a study's data."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_sims):
        loss, ids = simulate_truncation(rng, n_clusters, n_sequences, contexts, n_positions, **simulation)
        out.append(
            k_star(loss, contexts, ids, "cluster", n_boot=n_boot, seed=seed + i, alpha=alpha, null=null)
        )
    return out
