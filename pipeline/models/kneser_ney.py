"""Interpolated modified Kneser-Ney n-gram models: the count-model floor a neural LM must beat.

A model that does not beat a trigram fitted on the tokens it trained on has not learned local statistics, so its
use of distant context says nothing. The estimator is *interpolated modified Kneser-Ney* (Chen & Goodman 1998,
"An empirical study of smoothing techniques for language modeling", TR-10-98, sections 3.5 and 4.1.6), with the
adjusted counts and the uniform floor of KenLM (Heafield et al. 2013):

    p_n(w | h) = [max(c_n(h w) - D_n(c_n(h w)), 0) + gamma_n(h) p_{n-1}(w | h')] / c_n(h)      if c_n(h) > 0
               = p_{n-1}(w | h')                                                               otherwise
    gamma_n(h) = D_n1 N1(h .) + D_n2 N2(h .) + D_n3+ N3+(h .),    c_n(h) = sum_w c_n(h w)
    p_1(w)     = [max(c_1(w) - D_1(c_1(w)), 0) + gamma_1 / V] / sum_w c_1(w)        (V = vocab_size: the floor)

h' is h without its first token; N_r(h .) counts the words with c_n(h w) = r. c_n is the raw count at the top
order and the continuation count N1+(. g) (distinct left neighbours) below it, except for n-grams that start at a
document start, which have no left neighbour and keep their raw count. The discounts of each order come from its
counts of counts n_r (Chen & Goodman eq. 26):

    Y = n1 / (n1 + 2 n2),  D1 = 1 - 2Y n2/n1,  D2 = 2 - 3Y n3/n2,  D3+ = 3 - 4Y n4/n3.

Plain interpolated Kneser-Ney (one discount per order) is ``discounts={n: (D, D, D)}``. Where the formula is
undefined (some n_r = 0: e.g. the unigram level of a small vocabulary, where every word has many distinct left
neighbours) the order falls back to KenLM's ``--discount_fallback`` values (0.5, 1, 1.5), and the model lists the
orders that did in ``fallback_orders``.

Documents: every document is counted as ``[S] + doc``, S a start symbol (``bos_id`` when the windows scored later
begin with BOS, else a virtual id past the vocabulary that no window contains), so no n-gram crosses a document
start and S is a context, never a predicted word. Scoring: target t of a window (``window[t + 1]``) is predicted
from ``window[max(0, t + 2 - order) : t + 1]``; a window that starts mid-document gives its first targets a shorter
history, scored by the lower-order distribution (the usual approximation: 1 target per window for a trigram).
Numpy only: n-grams are int64 keys, counted with ``np.unique`` and looked up with ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Discounts = tuple[float, float, float]  # D1, D2, D3+
FALLBACK: Discounts = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback


def modified_kn_discounts(n1: int, n2: int, n3: int, n4: int, order: int = 0) -> Discounts:
    """Chen & Goodman (1998) eq. 26 from the counts of counts; a one-line error where the formula is undefined."""
    if min(n1, n2, n3, n4) <= 0:
        raise ValueError(
            f"Kneser-Ney order {order}: counts of counts n1..n4 = {(n1, n2, n3, n4)} must all be > 0 to estimate "
            "the discounts; fit on more tokens or pass discounts={order: (D1, D2, D3)}"
        )
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < v <= r for v, r in zip(d, (1, 2, 3), strict=True)):
        raise ValueError(f"Kneser-Ney order {order}: estimated discounts {d} outside (0, r]; pass discounts=")
    return d


@dataclass(frozen=True)
class _Level:
    """One order n: its n-grams' adjusted counts and, per (n-1)-token context, c(h) and gamma(h)."""

    keys: np.ndarray  # sorted int64 n-gram keys
    counts: np.ndarray  # adjusted counts, aligned with keys
    ctx_keys: np.ndarray  # sorted int64 context keys ([0] at n = 1: the empty context)
    ctx_total: np.ndarray  # c(h)
    ctx_gamma: np.ndarray  # gamma(h)
    discounts: Discounts


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[keys == query], 0 where the key is absent."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=values.dtype)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0)


def _discount(counts: np.ndarray, d: Discounts) -> np.ndarray:
    return np.select([counts == 1, counts == 2, counts >= 3], [d[0], d[1], d[2]], 0.0)


@dataclass(frozen=True)
class KneserNey:
    """A fitted model: ``token_losses(windows)`` scores windows, ``distribution(history)`` gives p(. | history)."""

    order: int
    vocab_size: int
    start_id: int  # S: bos_id, or vocab_size (virtual) when fitted without one
    levels: tuple[_Level, ...]  # levels[n - 1] is order n
    fallback_orders: tuple[int, ...] = ()  # orders whose discounts are the fallback, not estimated

    @property
    def base(self) -> int:
        return self.vocab_size + 1  # key alphabet: the vocabulary plus a virtual start id

    def _key(self, cols: Sequence[np.ndarray]) -> np.ndarray:
        key = np.zeros(len(cols[0]), dtype=np.int64)
        for c in cols:
            key = key * self.base + c
        return key

    def probs(self, history: np.ndarray, words: np.ndarray) -> np.ndarray:
        """p(words[i] | history[i]) for history Int[M, order - 1], right-aligned (the last column is the token
        just before the word), -1 where the history is shorter."""
        history, words = np.asarray(history, dtype=np.int64), np.asarray(words, dtype=np.int64)
        uni = self.levels[0]
        c = _lookup(uni.keys, uni.counts, words).astype(float)
        p = (
            np.maximum(c - _discount(c, uni.discounts), 0) + uni.ctx_gamma[0] / self.vocab_size
        ) / uni.ctx_total[0]
        for n in range(2, self.order + 1):
            lev = self.levels[n - 1]
            hist = history[:, history.shape[1] - (n - 1) :]
            have = (hist >= 0).all(axis=1)
            ctx = self._key(list(np.where(have[:, None], hist, 0).T))
            total = _lookup(lev.ctx_keys, lev.ctx_total, ctx)
            seen = have & (total > 0)
            gamma = _lookup(lev.ctx_keys, lev.ctx_gamma, ctx)
            c = _lookup(lev.keys, lev.counts, ctx * self.base + words).astype(float)
            top = np.maximum(c - _discount(c, lev.discounts), 0) + gamma * p
            p = np.where(seen, top / np.where(seen, total, 1), p)
        return p

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        """p(w | history) for every w in the vocabulary (sums to 1): for checks and plots."""
        h = np.full(self.order - 1, -1, dtype=np.int64)
        tail = np.asarray(history, dtype=np.int64)[-(self.order - 1) :] if self.order > 1 else []
        if len(tail):
            h[len(h) - len(tail) :] = tail
        words = np.arange(self.vocab_size)
        return self.probs(np.repeat(h[None, :], len(words), axis=0), words)

    def token_losses(self, windows: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Float[N, T] of -log p (nats) of each window's targets ``window[1:]`` given the tokens before them in
        the window (the layout of ``valid_token_losses.npz``); NaN past a shorter window's end."""
        w = _pad(windows)
        n_win, width = w.shape
        t = np.arange(width - 1)
        hist = np.full((n_win, width - 1, max(self.order - 1, 1)), -1, dtype=np.int64)
        for j in range(self.order - 1):  # column order - 2 - j holds the token j steps before the target
            src = t - j
            ok = src >= 0
            hist[:, ok, self.order - 2 - j] = w[:, src[ok]]
        targets = w[:, 1:]
        real = targets >= 0
        _check_tokens(w[w >= 0], self.vocab_size, "windows")
        p = self.probs(hist.reshape(-1, hist.shape[2]), np.where(real, targets, 0).ravel()).reshape(
            n_win, width - 1
        )
        return np.where(real, -np.log(p), np.nan)


def _pad(windows: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    rows = [np.asarray(x, dtype=np.int64).ravel() for x in windows]
    if not rows or max(len(r) for r in rows) < 2:
        raise ValueError("Kneser-Ney scoring: need windows of at least 2 tokens (an input and a target)")
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _check_tokens(flat: np.ndarray, vocab_size: int, what: str) -> None:
    if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"Kneser-Ney {what}: token ids must be in [0, vocab_size={vocab_size}), got "
                         f"[{flat.min()}, {flat.max()}]")  # fmt: skip


def fit_kneser_ney(
    documents: Sequence[Sequence[int]] | Sequence[np.ndarray],
    vocab_size: int,
    order: int = 3,
    bos_id: int | None = None,
    discounts: Mapping[int, Discounts] | None = None,
    discount_fallback: Discounts | None = FALLBACK,
) -> KneserNey:
    """Fit on the train documents (lists or arrays of token ids; the train stream a run saw, or its windows);
    ``discounts`` {order: (D1, D2, D3+)} overrides the estimate for the orders it names; where the estimate is
    undefined, ``discount_fallback`` is used (None: raise instead)."""
    if not 1 <= order <= 5:
        raise ValueError(f"Kneser-Ney order={order}: must be 1..5")
    base = vocab_size + 1
    if base**order >= 2**62:
        raise ValueError(f"Kneser-Ney: vocab_size={vocab_size} too large for order {order} int64 keys")
    if bos_id is not None and not 0 <= bos_id < vocab_size:
        raise ValueError(f"Kneser-Ney bos_id={bos_id}: must be in [0, vocab_size={vocab_size})")
    start = vocab_size if bos_id is None else bos_id
    docs = [np.asarray(d, dtype=np.int64).ravel() for d in documents]
    docs = [d for d in docs if len(d)]
    if not docs:
        raise ValueError("Kneser-Ney: no training tokens")
    flat = np.concatenate([np.concatenate([[start], d]) for d in docs])
    _check_tokens(np.concatenate(docs), vocab_size, "training documents")
    pos = np.concatenate([np.arange(len(d) + 1) for d in docs])  # position within [S] + doc

    raw: list[tuple[np.ndarray, np.ndarray]] = []  # per order n: (unique keys, raw counts)
    key = np.zeros(len(flat), dtype=np.int64)
    for n in range(1, order + 1):
        shifted = np.concatenate([np.zeros(n - 1, dtype=np.int64), flat[: len(flat) - (n - 1)]])
        key = key + shifted * base ** (n - 1)  # key of the n-gram ending at each position
        ok = (pos >= n - 1) & (pos >= 1)  # fits in the document; the predicted word is not S
        raw.append(np.unique(key[ok], return_counts=True))

    levels, fell_back = [], []
    for n in range(1, order + 1):
        keys, counts = raw[n - 1]
        if n < order:  # continuation counts; n-grams starting with S keep their raw counts
            cont_keys, cont = np.unique(raw[n][0] % base**n, return_counts=True)
            at_start = keys // base ** (n - 1) == start if n > 1 else np.zeros(len(keys), dtype=bool)
            keys = np.concatenate([cont_keys, keys[at_start]])
            counts = np.concatenate([cont, counts[at_start]])
            sort = np.argsort(keys)
            keys, counts = keys[sort], counts[sort]
        if discounts is not None and n in discounts:
            d = tuple(float(v) for v in discounts[n])
        else:
            try:
                d = modified_kn_discounts(*(int(np.sum(counts == r)) for r in (1, 2, 3, 4)), order=n)
            except ValueError:
                if discount_fallback is None:
                    raise
                d = discount_fallback
                fell_back.append(n)
        ctx = keys // base if n > 1 else np.zeros(len(keys), dtype=np.int64)
        ctx_keys, inv = np.unique(ctx, return_inverse=True)
        total = np.bincount(inv, weights=counts, minlength=len(ctx_keys))
        gamma = np.bincount(inv, weights=_discount(counts, d), minlength=len(ctx_keys))  # type: ignore[arg-type]
        levels.append(_Level(keys, counts, ctx_keys, total, gamma, d))  # type: ignore[arg-type]
    return KneserNey(order, vocab_size, start, tuple(levels), tuple(fell_back))
