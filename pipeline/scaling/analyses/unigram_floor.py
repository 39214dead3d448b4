"""The "learned nothing" yardstick: the train-unigram cross-entropy on the validation targets.

A model that has learned only token frequencies predicts every target with the *train* unigram distribution, so
its validation loss is the cross-entropy H(q_valid, p_train), not the validation set's own unigram entropy
H(q_valid) that learned_nothing.py used: H(q, p) >= H(q) (Gibbs), so the old threshold was below what a
frequency-only model scores, and runs between the two, which beat such a model, were excluded as having learned
nothing.

p_train is add-alpha smoothed (alpha = 1: Laplace, "add-one") over the whole vocabulary, so a validation token
unseen in training costs log((N + alpha V) / alpha) instead of infinity. Not the Kneser-Ney unigram: that uses
continuation counts (how many distinct words precede w), which is a back-off distribution, not the frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def train_unigram(
    train_tokens: Sequence[Sequence[int]] | Sequence[np.ndarray], vocab_size: int, alpha: float = 1.0
) -> np.ndarray:
    """p(w) = (c(w) + alpha) / (N + alpha V) over ids 0..V-1, from the train tokens (the targets a run trained on:
    its train stream, or its windows' ``window[1:]``)."""
    if not alpha > 0:
        raise ValueError(f"train_unigram alpha={alpha}: must be > 0 (a validation token unseen in training)")
    flat = (
        np.concatenate([np.asarray(t, dtype=np.int64).ravel() for t in train_tokens])
        if len(train_tokens)
        else []
    )
    flat = np.asarray(flat, dtype=np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(
            f"train_unigram: token ids must be in [0, vocab_size={vocab_size}), got [{flat.min()}, {flat.max()}]"
        )
    counts = np.bincount(flat, minlength=vocab_size).astype(float)
    return (counts + alpha) / (counts.sum() + alpha * vocab_size)


def unigram_token_losses(probs: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """-log p(target) [N, T] for the targets ``window[1:]`` of windows [N, W] (layout of the per-token losses)."""
    w = np.asarray(windows, dtype=np.int64)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"unigram_token_losses: windows must be [N, W >= 2], got shape {w.shape}")
    return -np.log(probs[w[:, 1:]])


def train_unigram_cross_entropy(
    train_tokens: Sequence[Sequence[int]] | Sequence[np.ndarray],
    valid_windows: np.ndarray,
    vocab_size: int,
    alpha: float = 1.0,
) -> float:
    """Mean nats per validation target of the add-alpha train unigram: the loss of a model that learned nothing
    but the train frequencies. A run at or above it learned nothing."""
    return float(unigram_token_losses(train_unigram(train_tokens, vocab_size, alpha), valid_windows).mean())
