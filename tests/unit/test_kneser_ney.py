"""Kneser-Ney floor: hand counts on a toy corpus, normalisation, trigram < bigram, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pipeline.models.kneser_ney import fit_kneser_ney, modified_kn_discounts

# toy corpus, vocab {0, 1, 2, 3} (0 never occurs): counted as [S 1 2 1 3] and [S 2 1 2]
DOCS = [[1, 2, 1, 3], [2, 1, 2]]
D = {
    1: (0.5, 1.0, 1.5),
    2: (0.5, 1.0, 1.5),
    3: (0.5, 1.0, 1.5),
}  # fixed discounts, so the arithmetic is short

# unigram continuation counts (distinct left neighbours): c(1) = |{S, 2}| = 2, c(2) = |{1, S}| = 2, c(3) = |{1}| = 1;
# total 5; gamma = D1 N1 + D2 N2 = 0.5 * 1 + 1.0 * 2 = 2.5; floor gamma / V = 2.5 / 4 = 0.625
P1 = {1: (2 - 1.0 + 0.625) / 5, 2: (2 - 1.0 + 0.625) / 5, 3: (1 - 0.5 + 0.625) / 5, 0: 0.625 / 5}


def test_discounts_formula_by_hand() -> None:
    # Y = 10 / (10 + 2 * 5) = 0.5; D1 = 1 - 2 * 0.5 * 5/10 = 0.5; D2 = 2 - 3 * 0.5 * 3/5 = 1.1; D3+ = 3 - 4 * 0.5 * 2/3
    assert modified_kn_discounts(10, 5, 3, 2) == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    with pytest.raises(ValueError, match="order 2: counts of counts"):
        modified_kn_discounts(3, 0, 1, 1, order=2)
    with pytest.raises(ValueError, match="order 1: counts of counts"):  # every word seen twice: no singletons
        fit_kneser_ney([[1, 2, 1, 2]], vocab_size=3, order=1, discount_fallback=None)


def test_bigram_equals_hand_count() -> None:
    lm = fit_kneser_ney(DOCS, vocab_size=4, order=2, discounts=D)
    assert lm.distribution([]) == pytest.approx([P1[0], P1[1], P1[2], P1[3]])
    # context 1: raw bigrams (1 2) x2, (1 3) x1 -> c(1) = 3, N1 = N2 = 1, gamma = 0.5 + 1.0 = 1.5
    hand = {
        2: (2 - 1.0 + 1.5 * P1[2]) / 3,
        3: (1 - 0.5 + 1.5 * P1[3]) / 3,
        1: 1.5 * P1[1] / 3,
        0: 1.5 * P1[0] / 3,
    }
    assert lm.distribution([1]) == pytest.approx([hand[w] for w in range(4)])
    assert hand[2] == pytest.approx(0.4958333333)
    # 3 is never a context: p(. | 3) is the unigram
    assert lm.distribution([3]) == pytest.approx(lm.distribution([]))
    # the window [1, 2, 3]: targets 2 | 1 and 3 | 2 (context 2: (2 1) x2 -> gamma = D2 = 1.0, c = 2)
    loss = lm.token_losses([[1, 2, 3]])
    p3_given_2 = (0 + 1.0 * P1[3]) / 2
    assert loss[0] == pytest.approx([-math.log(hand[2]), -math.log(p3_given_2)])


def test_trigram_equals_hand_count() -> None:
    lm = fit_kneser_ney(DOCS, vocab_size=4, order=3, discounts=D)
    # bigram level (continuation counts from trigrams S12 121 213 S21 212): c(1 2) = |{S, 2}| = 2, c(1 3) = 1,
    # c(2 1) = |{1, S}| = 2; (S 1), (S 2) start a document: raw counts 1 each
    p2_2_after_1 = (2 - 1.0 + 1.5 * P1[2]) / 3
    p2_3_after_1 = (1 - 0.5 + 1.5 * P1[3]) / 3
    p2_1_after_2 = (2 - 1.0 + 1.0 * P1[1]) / 2
    # trigram context (2 1): 2 1 3 and 2 1 2, c = 2, N1 = 2, gamma = 1.0; context (S 1): only S 1 2, gamma = 0.5
    assert lm.distribution([2, 1])[3] == pytest.approx((1 - 0.5 + 1.0 * p2_3_after_1) / 2)
    assert lm.distribution([2, 1])[3] == pytest.approx(0.3895833333)
    assert lm.distribution([4, 1])[2] == pytest.approx(0.5 + 0.5 * p2_2_after_1)  # 4 = the virtual start S
    # window [2, 1, 3] (starts mid-document): target 0 has a history of one token -> the bigram level
    loss = lm.token_losses([[2, 1, 3], [1, 2]])
    assert loss[0] == pytest.approx([-math.log(p2_1_after_2), -math.log((0.5 + p2_3_after_1) / 2)])
    assert np.isnan(loss[1, 1]) and loss[1, 0] == pytest.approx(-math.log(p2_2_after_1))


def test_bos_is_a_context_at_window_starts() -> None:
    bos = 0
    lm = fit_kneser_ney(DOCS, vocab_size=4, order=2, bos_id=bos, discounts=D)
    # context BOS: (BOS 1) x1, (BOS 2) x1 -> c = 2, N1 = 2, gamma = 1.0; the unigram of BOS itself gets the floor only
    p = lm.distribution([bos])
    assert p[1] == pytest.approx((1 - 0.5 + 1.0 * P1[1]) / 2)
    assert lm.token_losses([[bos, 1]])[0, 0] == pytest.approx(-math.log(p[1]))


def _markov2(n: int, vocab: int, seed: int) -> list[np.ndarray]:
    """A second-order chain: the next token depends on the last two (a trigram beats a bigram on it)."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.05), size=(vocab, vocab)).cumsum(axis=2)
    out, a, b = np.empty(n, dtype=np.int64), 1, 2
    u = rng.random(n)
    for i in range(n):
        c = min(int(np.searchsorted(table[a, b], u[i])), vocab - 1)
        out[i], a, b = c, b, c
    return [out[i : i + 1000] for i in range(0, n, 1000)]


def test_sums_to_one_and_trigram_beats_bigram() -> None:
    docs = _markov2(60_000, 20, 0)
    valid = np.stack(_markov2(4_000, 20, 0)[:4])  # same chain (seeded alike), held-out windows
    bi, tri = (fit_kneser_ney(docs[:-4], vocab_size=24, order=n) for n in (2, 3))
    for lm in (bi, tri):
        for h in ([], [3], [5, 7], [23, 23], [0, 3]):  # 20..23 and 0 are unseen words / contexts
            assert lm.distribution(h).sum() == pytest.approx(1.0, abs=1e-12)
            assert np.all(lm.distribution(h) > 0)
    assert tri.fallback_orders == (1,)  # 20 words, each with many distinct left neighbours: n1 = 0 at order 1
    l_bi, l_tri = np.nanmean(bi.token_losses(valid)), np.nanmean(tri.token_losses(valid))
    assert l_tri < l_bi - 0.3, (l_tri, l_bi)


def test_million_tokens_in_seconds() -> None:
    rng = np.random.default_rng(1)
    zipf = np.minimum(rng.zipf(1.2, 1_000_000), 8000) - 1
    docs = np.split(zipf, 50)
    t0 = time.perf_counter()
    lm = fit_kneser_ney(docs, vocab_size=8000, order=3)
    loss = lm.token_losses(zipf[: 74 * 513].reshape(74, 513))
    elapsed = time.perf_counter() - t0
    assert loss.shape == (74, 512) and np.isfinite(loss).all()
    assert elapsed < 10, f"fit on 1M tokens + scoring took {elapsed:.1f} s"
