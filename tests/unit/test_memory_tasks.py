"""MQAR and copy generators: Zoology's and Jelassi et al.'s semantics, seeds, disjoint splits, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.memory_tasks import (
    BOS,
    EOS,
    IGNORE,
    LETTER0,
    PAD,
    SEP,
    SPLITS,
    content_split,
    copy_seq_len,
    copy_task,
    mqar,
    sample_without_replacement,
)

CELL = {"vocab_size": 64, "n_pairs": 4, "seq_len": 32}


def pairs_of(tokens: np.ndarray, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    return tokens[:, 0 : 2 * n_pairs : 2], tokens[:, 1 : 2 * n_pairs : 2]


@pytest.mark.parametrize("filler", ["zeros", "random"])
def test_mqar_layout_and_answers(filler: str) -> None:
    V, N, L = CELL["vocab_size"], CELL["n_pairs"], CELL["seq_len"]
    ex = mqar(300, **CELL, seed=1, split="train", filler=filler)
    assert ex.tokens.shape == ex.targets.shape == ex.mask.shape == (300, L)
    keys, values = pairs_of(ex.tokens, N)
    assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
    for row in range(300):
        assert len(set(keys[row])) == N and len(set(values[row])) == N  # distinct within an example
        answers = np.flatnonzero(ex.mask[row])
        assert len(answers) == N and (answers >= 2 * N).all() and ((answers - 2 * N) % 2 == 0).all()
        for t in answers:
            i = ex.meta["pair"][row, t]
            assert ex.tokens[row, t] == keys[row, i]  # the query is pair i's key ...
            assert ex.targets[row, t] == values[row, i]  # ... and its answer pair i's value
            assert ex.meta["distance"][row, t] == t - 2 * i
        assert sorted(ex.meta["pair"][row, answers]) == list(range(N))  # every key queried once
    assert (ex.targets[~ex.mask] == IGNORE).all() and (ex.targets[ex.mask] != IGNORE).all()
    assert (ex.meta["pair"][~ex.mask] == -1).all() and (ex.meta["distance"][~ex.mask] == -1).all()
    filler_tokens = ex.tokens[:, 2 * N :][~ex.mask[:, 2 * N :]]
    if filler == "zeros":
        assert (filler_tokens == 0).all()
    else:  # uniform over the vocabulary, as Zoology's random_non_queries
        assert len(np.unique(filler_tokens)) > V // 2


def test_mqar_gaps_follow_the_power_law() -> None:
    """p(g) ∝ a (g+1)^(a-1), a = 0.01: the first slot after the pairs is by far the most likely; with a = 1 the
    slots are uniform. Compared with the law's own expectation for the first draw (pair 0)."""
    N, L = 2, 84
    space = (L - 2 * N) // 2
    for a in (0.01, 1.0):
        ex = mqar(4000, vocab_size=64, n_pairs=N, seq_len=L, seed=3, split="train", power_a=a, filler="zeros")
        q0 = np.argmax(ex.mask & (ex.meta["pair"] == 0), axis=1)
        gaps = (q0 - 2 * N) // 2
        p = a * np.arange(1, space + 1) ** (a - 1)
        p /= p.sum()
        assert abs(np.mean(gaps == 0) - p[0]) < 0.03
        assert abs(np.mean(gaps) - np.dot(np.arange(space), p)) < 0.05 * space
    ex = mqar(4000, vocab_size=64, n_pairs=N, seq_len=L, seed=3, split="train", power_a=0.01)
    gaps = (np.flatnonzero(ex.mask.ravel()) % L - 2 * N) // 2
    assert np.mean(gaps < space // 4) > 0.4  # queries cluster just after the pairs (uniform would be 0.25)


def test_weighted_sampling_without_replacement_matches_sequential_draws() -> None:
    """Gumbel-top-k's first and second draws have the law of numpy's sequential choice(replace=False, p)."""
    p = np.array([0.5, 0.3, 0.15, 0.05])
    draws = sample_without_replacement(np.random.default_rng(0), 40000, 4, 2, np.log(p))
    assert (draws[:, 0] != draws[:, 1]).all()
    first = np.bincount(draws[:, 0], minlength=4) / len(draws)
    np.testing.assert_allclose(first, p, atol=0.01)
    second_given_0 = np.bincount(draws[draws[:, 0] == 0, 1], minlength=4)[1:]
    np.testing.assert_allclose(second_given_0 / second_given_0.sum(), p[1:] / p[1:].sum(), atol=0.02)
    uniform = sample_without_replacement(np.random.default_rng(0), 2000, 10, 5)
    assert all(len(set(r)) == 5 for r in uniform) and uniform.min() == 0 and uniform.max() == 9


def test_copy_layout_answers_and_mask() -> None:
    ex = copy_task(200, min_len=3, max_len=9, seq_len=copy_seq_len(9), seed=0, split="train", alphabet_size=5)
    for row in range(200):
        toks = ex.tokens[row]
        k = int(np.flatnonzero(toks == SEP)[0]) - 1
        assert 3 <= k <= 9 and toks[0] == BOS and toks[2 * k + 2] == EOS and (toks[2 * k + 3 :] == PAD).all()
        x = toks[1 : k + 1]
        assert ((x >= LETTER0) & (x < LETTER0 + 5)).all()
        np.testing.assert_array_equal(toks[k + 2 : 2 * k + 2], x)  # `$x|x.`
        answers = np.flatnonzero(ex.mask[row])
        np.testing.assert_array_equal(answers, np.arange(k + 1, 2 * k + 2))  # predicts the copy and the '.'
        np.testing.assert_array_equal(ex.targets[row, answers], np.append(x, EOS))
        np.testing.assert_array_equal(ex.meta["offset"][row, answers], np.arange(k + 1))
        assert (ex.meta["length"][row, answers] == k).all()
    assert (ex.targets[~ex.mask] == IGNORE).all()
    lengths = ex.meta["length"].max(axis=1)
    assert set(lengths) == set(range(3, 10))  # the whole range is drawn


def test_deterministic_per_seed_and_prefix_stable() -> None:
    a = mqar(700, **CELL, seed=5, split="validation")
    b = mqar(700, **CELL, seed=5, split="validation")
    c = mqar(700, **CELL, seed=6, split="validation")
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(a.tokens, c.tokens)
    short = mqar(100, **CELL, seed=5, split="validation")
    np.testing.assert_array_equal(short.tokens, a.tokens[:100])
    x = copy_task(50, min_len=1, max_len=5, seq_len=13, seed=2, split="test")
    np.testing.assert_array_equal(
        x.tokens, copy_task(50, min_len=1, max_len=5, seq_len=13, seed=2, split="test").tokens
    )


def _contents(ex, n_pairs: int | None) -> set[bytes]:
    """An example's identity: MQAR keys, values and query slots (filler aside); copy the whole row."""
    if n_pairs is None:
        return {r.tobytes() for r in ex.tokens}
    L = ex.tokens.shape[1]
    content = np.where(ex.mask, ex.tokens, 0)
    content[:, : 2 * n_pairs] = ex.tokens[:, : 2 * n_pairs]
    return {r.tobytes() for r in content[:, :L]}


def test_splits_disjoint_on_small_cells() -> None:
    """Cells small enough that independent streams would collide many times: 26 + 676 + 17576 copy strings of
    length 1-3; MQAR with V = 8, N = 1 (3 keys x 4 values x 4 slots = 48 contents). No content crosses splits,
    and each split's content is the one `content_split` assigns it."""
    for make, n_pairs in (
        (lambda s: copy_task(3000, min_len=1, max_len=3, seq_len=9, seed=0, split=s), None),
        (lambda s: mqar(600, vocab_size=8, n_pairs=1, seq_len=10, seed=0, split=s, filler="random"), 1),
    ):
        sets = {s: _contents(make(s), n_pairs) for s in SPLITS}
        assert all(len(v) > 5 for v in sets.values())
        assert not sets["train"] & sets["validation"]
        assert not sets["train"] & sets["test"]
        assert not sets["validation"] & sets["test"]
    ex = mqar(200, **CELL, seed=0, split="test", filler="zeros")
    assert (content_split(ex.tokens) == SPLITS.index("test")).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"vocab_size": 8, "n_pairs": 4, "seq_len": 16}, "mqar.vocab_size=8"),
        ({"vocab_size": 64, "n_pairs": 4, "seq_len": 15}, "mqar.seq_len=15"),
        ({"vocab_size": 64, "n_pairs": 0, "seq_len": 16}, "mqar.n_pairs=0"),
        ({"vocab_size": 64, "n_pairs": 2, "seq_len": 16, "power_a": 0.0}, "mqar.power_a=0.0"),
        ({"vocab_size": 64, "n_pairs": 2, "seq_len": 16, "filler": "ones"}, "mqar.filler='ones'"),
    ],
)
def test_mqar_bad_input_names_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        mqar(4, **kwargs, seed=0, split="train")


def test_copy_and_split_bad_input() -> None:
    with pytest.raises(ValueError, match=r"copy.max_len=10: must be at most \(seq_len - 3\) // 2 = 8"):
        copy_task(4, min_len=1, max_len=10, seq_len=20, seed=0, split="train")
    with pytest.raises(ValueError, match="copy.max_len=2: must be an int >= min_len=3"):
        copy_task(4, min_len=3, max_len=2, seq_len=20, seed=0, split="train")
    with pytest.raises(ValueError, match="split='dev'"):
        mqar(4, **CELL, seed=0, split="dev")
    with pytest.raises(ValueError, match="n=0"):
        mqar(0, **CELL, seed=0, split="train")
    with pytest.raises(
        ValueError, match="too few distinct examples"
    ):  # one string in all: two splits get none
        for split in SPLITS:
            copy_task(4, min_len=1, max_len=1, seq_len=5, seed=0, split=split, alphabet_size=1)
