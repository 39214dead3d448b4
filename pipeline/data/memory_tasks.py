"""Known-truth memory tasks: MQAR (Zoology) and copy (Jelassi et al. 2024), generated from a seed.

Both return a `TaskExamples`: input tokens, the target of every position (what the logits at t must predict),
an answer-only mask, and per-answer metadata for bucketing metrics (by pair and query distance, by copy length).

MQAR follows HazyResearch/zoology `zoology/data/multiquery_ar.py`: keys without replacement from {1..V/2-1},
values without replacement from {V/2..V-1}; tokens `k1 v1 ... kN vN`, then key i again as a query at input
position 2N + 2g_i, the gaps g drawn without replacement from p(g) ∝ a·(g+1)^(a-1), g = 0..(L-2N)//2 - 1 (the
i-th draw goes to pair i, as Zoology pairs them); the target at a query position is that key's value, every
other target is IGNORE; filler "zeros" (Zoology's Fig. 2) or "random" tokens from [0, V) (its default).

Copy follows sjelassi/transformers_ssm_copy: `$x|x.` with x uniform over an alphabet, answer = the copied x and
the '.', exact match per string. One example per sequence, right-padded (not packed as their training is): every
string then starts from the model's initial state, so a recurrence's failure is a function of that length alone,
and per-length exact match needs no bookkeeping across packed neighbours. Ids: 0 pad, 1 '$', 2 '|', 3 '.',
letters 4.. (pad 0 matches the models' default pad_id).

Splits are disjoint by construction: each example's content (MQAR: keys, values and gaps, filler excluded; copy:
the string) is hashed, and the hash's residue mod 3 assigns it to train, validation or test; a split's generator
keeps only its own residue. Each split draws from its own stream, SeedSequence(seed, spawn_key=(split index,)).
Candidates come in fixed-size chunks, so the first n examples of a split do not depend on how many are asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IGNORE = -100  # target of every non-answer position (torch's cross-entropy ignore_index)
SPLITS = ("train", "validation", "test")
FILLERS = ("zeros", "random")
PAD, BOS, SEP, EOS = 0, 1, 2, 3  # copy: pad, '$', '|', '.'
LETTER0 = 4  # copy: id of the first letter
CHUNK = 512  # candidate rows per draw: fixed, so outputs are prefix-stable in n


@dataclass(frozen=True)
class TaskExamples:
    """n examples of length T. targets[t] is what the logits at position t must predict (IGNORE off answers);
    mask marks the answers; each `meta` array is int64 [n, T], -1 off answers."""

    tokens: np.ndarray  # int64 [n, T]
    targets: np.ndarray  # int64 [n, T]
    mask: np.ndarray  # bool [n, T]
    meta: dict[str, np.ndarray]


def _fail(task: str, key: str, value: object, must: str) -> None:
    raise ValueError(f"{task}.{key}={value!r}: must be {must}")


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The random stream of one split: independent of the other splits' for the same seed."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {SPLITS}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be an int >= 0")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(SPLITS.index(split),)))


def content_split(rows: np.ndarray) -> np.ndarray:
    """int64 [m, T] -> the split index (0, 1, 2) each row's content belongs to: FNV-1a over the tokens, then the
    splitmix64 finaliser, mod 3. A pure function of the row, so equal rows always land in the same split."""
    with np.errstate(over="ignore"):
        h = np.full(rows.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
        for col in rows.astype(np.uint64).T:
            h = (h ^ col) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h % np.uint64(len(SPLITS))).astype(np.int64)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest scores, largest first."""
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1)
    return np.take_along_axis(idx, order, axis=1)


def sample_without_replacement(
    rng: np.random.Generator, m: int, pool: int, k: int, log_weights: np.ndarray | None = None
) -> np.ndarray:
    """[m, k] draws from range(pool) without replacement, in draw order, as numpy's sequential `choice(...,
    replace=False, p=...)` makes them: Gumbel-top-k (its ordered top k has the same law) for weighted draws;
    for uniform ones rejection of rows with a repeat where that accepts often (k^2 <= 2 pool), else top-k."""
    if log_weights is None and k * k <= 2 * pool:
        out = rng.integers(0, pool, size=(m, k))
        while True:
            s = np.sort(out, axis=1)
            bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not bad.any():
                return out
            out[bad] = rng.integers(0, pool, size=(int(bad.sum()), k))
    logits = np.zeros(pool) if log_weights is None else log_weights
    return _top_k(logits[None, :] + rng.gumbel(size=(m, pool)), k)


def _collect(
    rng: np.random.Generator, split: str, n: int, draw: Callable[[np.random.Generator, int], tuple]
) -> tuple:
    """Draw CHUNK candidates at a time (draw -> (content rows, *other arrays)); keep the rows whose content
    belongs to `split` until n are kept."""
    if not _is_int(n) or n < 1:
        raise ValueError(f"n={n!r}: must be an int >= 1 (examples to generate)")
    want = SPLITS.index(split)
    kept: list[tuple] = []
    total = empty = 0
    while total < n:
        arrays = draw(rng, CHUNK)
        keep = content_split(arrays[0]) == want
        kept.append(tuple(a[keep] for a in arrays))
        total += int(keep.sum())
        empty = 0 if keep.any() else empty + 1
        if empty == 20:
            raise ValueError(
                f"split={split!r}: the task's settings allow too few distinct examples to fill it"
            )
    return tuple(np.concatenate(parts)[:n] for parts in zip(*kept, strict=True))


def check_mqar(vocab_size: int, n_pairs: int, seq_len: int, power_a: float, filler: str) -> None:
    """One ValueError naming the key for a layout that cannot hold the pairs and their queries."""
    if not _is_int(n_pairs) or n_pairs < 1:
        _fail("mqar", "n_pairs", n_pairs, "an int >= 1")
    if not _is_int(vocab_size) or vocab_size // 2 - 1 < n_pairs:
        _fail(
            "mqar",
            "vocab_size",
            vocab_size,
            f"an int with vocab_size//2 - 1 >= n_pairs={n_pairs} (distinct keys from 1..V/2-1, "
            f"values from V/2..V-1): at least {2 * n_pairs + 2}",
        )
    if not _is_int(seq_len) or seq_len < 4 * n_pairs:
        _fail(
            "mqar", "seq_len", seq_len, f"an int >= 4 * n_pairs = {4 * n_pairs} (pairs, then one query each)"
        )
    if not isinstance(power_a, int | float) or isinstance(power_a, bool) or not power_a > 0:
        _fail("mqar", "power_a", power_a, "a number > 0 (1 = uniform gaps)")
    if filler not in FILLERS:
        _fail("mqar", "filler", filler, f"one of {FILLERS}")


def mqar(
    n: int,
    *,
    vocab_size: int,
    n_pairs: int,
    seq_len: int,
    seed: int,
    split: str,
    power_a: float = 0.01,
    filler: str = "random",
) -> TaskExamples:
    """n MQAR sequences of length seq_len (Zoology's layout; module docstring). meta: "pair" (0-based pair
    index of the answer) and "distance" (query position minus its key's position)."""
    check_mqar(vocab_size, n_pairs, seq_len, power_a, filler)
    N, V, L = n_pairs, vocab_size, seq_len
    context = 2 * N
    space = (L - context) // 2  # query slots: positions context + 2g, g in [0, space)
    log_p = np.log(power_a) + (power_a - 1) * np.log(np.arange(1, space + 1))

    def draw(rng: np.random.Generator, m: int) -> tuple:
        keys = 1 + sample_without_replacement(rng, m, V // 2 - 1, N)
        values = V // 2 + sample_without_replacement(rng, m, V - V // 2, N)
        gaps = sample_without_replacement(rng, m, space, N, log_p)
        rows = np.zeros((m, L), dtype=np.int64)
        rows[:, 0:context:2], rows[:, 1:context:2] = keys, values
        np.put_along_axis(rows, context + 2 * gaps, keys, axis=1)
        fill = rng.integers(0, V, size=(m, L)) if filler == "random" else np.zeros((m, L), dtype=np.int64)
        return rows, values, gaps, fill

    tokens, values, gaps, fill = _collect(split_rng(seed, split), split, n, draw)
    query_pos = context + 2 * gaps  # [n, N]
    targets = np.full((n, L), IGNORE, dtype=np.int64)
    np.put_along_axis(targets, query_pos, values, axis=1)
    mask = targets != IGNORE
    pair = np.full((n, L), -1, dtype=np.int64)
    np.put_along_axis(pair, query_pos, np.broadcast_to(np.arange(N), (n, N)), axis=1)
    distance = np.full((n, L), -1, dtype=np.int64)
    np.put_along_axis(distance, query_pos, query_pos - 2 * np.arange(N), axis=1)
    tokens = np.where(tokens == 0, fill, tokens)  # filler is not content: the split hash saw zeros there
    return TaskExamples(tokens, targets, mask, {"pair": pair, "distance": distance})


def copy_seq_len(max_len: int) -> int:
    """Tokens a `$x|x.` example of the longest string takes."""
    return 2 * max_len + 3


def copy_vocab_size(alphabet_size: int = 26) -> int:
    return LETTER0 + alphabet_size


def check_copy(min_len: int, max_len: int, seq_len: int, alphabet_size: int) -> None:
    if not _is_int(alphabet_size) or alphabet_size < 1:
        _fail("copy", "alphabet_size", alphabet_size, "an int >= 1")
    if not _is_int(min_len) or min_len < 1:
        _fail("copy", "min_len", min_len, "an int >= 1")
    if not _is_int(max_len) or max_len < min_len:
        _fail("copy", "max_len", max_len, f"an int >= min_len={min_len}")
    if not _is_int(seq_len) or seq_len < copy_seq_len(max_len):
        _fail(
            "copy",
            "max_len",
            max_len,
            f"at most (seq_len - 3) // 2 = {(seq_len - 3) // 2 if _is_int(seq_len) else '?'}: "
            f"`$x|x.` takes 2*max_len+3 = {copy_seq_len(max_len)} tokens, seq_len={seq_len!r}",
        )


def copy_task(
    n: int,
    *,
    min_len: int,
    max_len: int,
    seq_len: int,
    seed: int,
    split: str,
    alphabet_size: int = 26,
) -> TaskExamples:
    """n copy examples `$x|x.`, len(x) uniform in [min_len, max_len], one per row, padded to seq_len. For
    training use the training length range; for length generalisation call again with the eval range.
    meta: "length" (len(x)) and "offset" (index of the answer in `x.`: 0..len(x)-1, len(x) for the '.')."""
    check_copy(min_len, max_len, seq_len, alphabet_size)
    T = seq_len
    col = np.arange(T)[None, :]

    def draw(rng: np.random.Generator, m: int) -> tuple:
        lengths = rng.integers(min_len, max_len + 1, size=m)
        letters = LETTER0 + rng.integers(0, alphabet_size, size=(m, max_len))
        x = np.where(np.arange(max_len)[None, :] < lengths[:, None], letters, PAD)
        rows = np.zeros((m, T), dtype=np.int64)
        rows[:, 0] = BOS
        rows[:, 1 : max_len + 1] = x
        k = lengths[:, None]
        rows = np.where(col == k + 1, SEP, rows)
        copy = np.take_along_axis(rows, np.clip(col - k - 1, 0, T - 1), axis=1)  # rows[t - k - 1]
        rows = np.where((col >= k + 2) & (col <= 2 * k + 1), copy, rows)
        rows = np.where(col == 2 * k + 2, EOS, rows)
        return rows, lengths

    tokens, lengths = _collect(split_rng(seed, split), split, n, draw)
    k = lengths[:, None]
    mask = (col >= k + 1) & (col <= 2 * k + 1)  # logits at t predict token t+1: the copy and the '.'
    shifted = np.concatenate([tokens[:, 1:], np.full((n, 1), PAD, dtype=np.int64)], axis=1)
    targets = np.where(mask, shifted, IGNORE)
    length = np.where(mask, np.broadcast_to(k, (n, T)), -1)
    offset = np.where(mask, col - k - 1, -1)
    return TaskExamples(tokens, targets, mask, {"length": length, "offset": offset})
