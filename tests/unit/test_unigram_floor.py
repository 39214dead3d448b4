"""The learned-nothing yardstick: train-unigram cross-entropy, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.scaling.analyses.learned_nothing import unigram_entropy
from pipeline.scaling.analyses.unigram_floor import (
    train_unigram,
    train_unigram_cross_entropy,
    unigram_token_losses,
)


def test_hand_count() -> None:
    # train counts over ids 0..4: c = [0, 3, 1, 1, 0], N = 5; add-one: p = (c + 1) / (5 + 5)
    train = [[1, 1, 2, 3], [1]]
    p = train_unigram(train, vocab_size=5)
    assert p == pytest.approx([0.1, 0.4, 0.2, 0.2, 0.1])
    valid = np.array([[2, 1, 4], [3, 1, 1]])  # targets 1, 4 | 1, 1
    assert unigram_token_losses(p, valid) == pytest.approx(-np.log([[0.4, 0.1], [0.4, 0.4]]))
    want = -(3 * math.log(0.4) + math.log(0.1)) / 4
    assert train_unigram_cross_entropy(train, valid, 5) == pytest.approx(want)
    # add-0.5: p(1) = 3.5 / 7.5, p(4) = 0.5 / 7.5
    half = -(3 * math.log(3.5 / 7.5) + math.log(0.5 / 7.5)) / 4
    assert train_unigram_cross_entropy(train, valid, 5, alpha=0.5) == pytest.approx(half)


def test_above_the_validation_sets_own_entropy() -> None:
    """The old threshold (the validation targets' own unigram entropy) is below the new one (Gibbs)."""
    rng = np.random.default_rng(0)
    train = [rng.zipf(1.5, 20_000) % 50]
    valid = (rng.zipf(1.3, (10, 65)) + 3) % 50  # a different distribution
    new = train_unigram_cross_entropy(train, valid, 50)
    old = unigram_entropy(np.bincount(valid[:, 1:].ravel(), minlength=50))
    assert new > old + 0.1


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"token ids must be in \[0, vocab_size=3\)"):
        train_unigram([[0, 5]], 3)
    with pytest.raises(ValueError, match="alpha=0: must be > 0"):
        train_unigram([[0, 1]], 3, alpha=0)


def test_learned_nothing_uses_the_train_unigram_cross_entropy_and_counts_old_records() -> None:
    from pipeline.scaling.analyses.learned_nothing import learned_nothing, old_rule_runs
    from pipeline.scaling.records.run_record import RunRecord

    def rec(loss: float, xent: float | None) -> RunRecord:
        return RunRecord(
            "r", "lstm", 10, 10, 1.0, 10, 10.0, 1.0, loss, loss, unigram_entropy=6.0, unigram_xent=xent
        )

    # between the validation entropy (6.0) and the train-unigram cross-entropy (6.3): it beat a frequency-only
    # model, so it learned something; the old rule excluded it
    assert not learned_nothing(rec(6.1, 6.3)) and learned_nothing(rec(6.1, None))
    assert learned_nothing(rec(6.3, 6.3)) and not learned_nothing(rec(5.9, 6.3))
    assert old_rule_runs([rec(6.1, 6.3), rec(6.1, None), rec(5.0, None)]) == 2
