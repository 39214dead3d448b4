"""Truncation evaluation: the loss of each validation token given only its last K tokens.

The band estimate (loss at positions 16-63 minus loss at 256-511) compares *different* tokens, so the tokens'
own difficulty swamps the context effect. Scoring the *same* token with its context cut to K tokens, for several
K, gives L(K) and the per-token Delta(K) = L(K) - L(K_max) on identical tokens: the paired difference whose spread
is only the context effect's (Khandelwal et al. 2018, "Sharp Nearby, Fuzzy Far Away", used the same design).

Design: exact truncation for any model with ``lm_forward(tokens) -> logits`` (recurrent or attention). Target t of
a window (``window[t + 1]``) has t + 1 tokens before it (t real ones when ``window[0]`` is BOS). At context K, a
target whose prefix is at most K tokens is scored once on the full window (the same number at every such K);
every later target gets its own sequence of exactly its last K tokens (BOS first when the windows have BOS, the
regime the model trained in), built with ``unfold`` and run in batches of about ``max_batch_tokens`` tokens; only
only its last position is projected to the vocabulary. The cost at context K is (T - K) x K token-steps per window: no state or cache can be
shared, because a truncated context starts at position 0 with a fresh state. A "chunked" pass (contexts of *at
most* K) would be cheaper but would not score a token at exactly K, which is what makes Delta(K) paired.
``stride`` s scores every s-th target (the same ones at every K, so Delta(K) stays paired) at 1/s of the cost:
neighbouring tokens' Delta(K) are correlated, so the clustered intervals widen far less than sqrt(s) (measured on a
d128 residual LSTM, results/context-rerun-cpu/README.md); at contexts of thousands of tokens it is what makes the
evaluation affordable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Truncation:
    """Per-token losses at each context length: ``loss[k, n, t]`` (nats) of target t of window n given its last
    ``contexts[k]`` tokens; NaN before ``min_position``. ``first_cut[k]`` is the first target whose context is
    actually cut at ``contexts[k]`` (earlier targets see their whole prefix)."""

    contexts: tuple[int, ...]
    loss: np.ndarray
    first_cut: tuple[int, ...]
    bos: bool

    @property
    def late_start(self) -> int:
        """The first target with at least K_max real tokens before it: from here on, every context length is
        exactly K tokens, so L(K) compares the same tokens at truly different contexts."""
        return max(self.contexts) - 1 + int(self.bos)

    def curve(self, first_position: int | None = None) -> np.ndarray:
        """L(K): the mean loss over the targets at or after ``first_position`` (default `late_start`)."""
        start = self.late_start if first_position is None else first_position
        if start >= self.loss.shape[2]:
            raise ValueError(
                f"truncation curve: no target at or after position {start} (windows have {self.loss.shape[2]} "
                f"targets; the largest context {max(self.contexts)} needs longer windows)"
            )
        return np.nanmean(self.loss[:, :, start:].reshape(len(self.contexts), -1), axis=1)

    def delta(self, first_position: int | None = None) -> np.ndarray:
        """Delta(K) = L(K) - L(K_max) on the same targets."""
        c = self.curve(first_position)
        return c - c[int(np.argmax(self.contexts))]


@contextmanager
def _last_position_only(model: torch.nn.Module) -> Iterator[None]:
    """Project only the last position to the vocabulary: a truncated context needs one logit row, and the output
    projection over all K positions (K x V x d) would otherwise dominate the cost (measured on CPU at V = 4000,
    d = 48: 5x faster for a Transformer, 10x for an LSTM). A forward pre-hook on the models' ``out_proj`` slices its input; models without one are
    projected in full and sliced after."""
    proj = getattr(model, "out_proj", None)
    if not isinstance(proj, torch.nn.Linear):
        yield
        return
    handle = proj.register_forward_pre_hook(lambda _mod, args: (args[0][:, -1:],))
    try:
        yield
    finally:
        handle.remove()


def _target_losses(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, last_only: bool
) -> torch.Tensor:
    if last_only:
        with _last_position_only(model):
            logits = model.lm_forward(inputs)[:, -1:]
    else:
        logits = model.lm_forward(inputs)
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")


@torch.no_grad()
def truncation_losses(
    model: torch.nn.Module,
    windows: torch.Tensor,
    contexts: Sequence[int],
    bos_id: int | None = None,
    min_position: int = 0,
    max_batch_tokens: int = 1 << 15,
    stride: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Truncation:
    """Score every target of ``windows`` Long[N, W] (targets ``window[1:]``) at each context length in ``contexts``.

    ``bos_id``: the windows start with this BOS, which is kept as the first input of every truncated context and
    does not count towards K. ``min_position``: targets before it are not scored (NaN): the late tokens are the
    ones a long context can help, and skipping the early ones saves most of the cost. ``stride``: only targets
    ``min_position + i * stride`` are scored (the rest NaN), at every context. ``progress``: called with one line
    after each context (the evaluation of a long split runs for minutes)."""
    if windows.dim() != 2 or windows.size(1) < 2:
        raise ValueError(
            f"truncation_losses: windows must be Long[N, W >= 2], got shape {tuple(windows.shape)}"
        )
    ks = tuple(int(k) for k in contexts)
    if not ks or min(ks) < 1:
        raise ValueError(f"truncation_losses: contexts must be positive ints, got {list(contexts)}")
    if int(stride) < 1:
        raise ValueError(f"truncation_losses: stride must be >= 1 (1 = every target), got {stride}")
    if bos_id is not None and not bool((windows[:, 0] == bos_id).all()):
        raise ValueError(f"truncation_losses: bos_id={bos_id} given but not every window starts with it")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    windows = windows.to(device)
    n, width = windows.shape
    n_targets = width - 1
    prefix = 0 if bos_id is None else 1
    # the full-prefix pass scores only the targets no context cuts (t < the largest cut): its inputs stop there, so
    # a window longer than the model's position table (a sliding window with a stream prefix) is never run whole
    uncut = min(max(ks) + prefix, n_targets)
    full = (
        torch.cat(
            [
                _target_losses(
                    model, windows[i : i + b, :uncut], windows[i : i + b, 1 : uncut + 1], last_only=False
                )
                for b in [max(1, max_batch_tokens // max(uncut, 1))]
                for i in range(0, n, b)
            ]
        )
        if uncut > 0
        else windows.new_zeros((n, 0), dtype=torch.float)
    )
    out = torch.full((len(ks), n, n_targets), float("nan"), dtype=torch.float64)
    began = time.monotonic()
    first_cut = []
    for j, k in enumerate(ks):
        cut = k + prefix  # target t is cut when its real prefix (t + 1 - prefix tokens) exceeds K
        first_cut.append(min(cut, n_targets))
        out[j, :, : min(cut, n_targets)] = full[:, : min(cut, n_targets)].double().cpu()  # cut <= uncut
        start = max(cut, min_position)
        start += (min_position - start) % stride  # the first scored target on the stride grid
        if start >= n_targets:
            continue
        # context of target t: window[t + 1 - k : t + 1], i.e. unfold(k)[s] with s = t + 1 - k
        ctx = windows[:, :-1].unfold(1, k, 1)[:, start + 1 - k :: stride]  # [N, n_cut, k]
        tgt = windows[:, start + 1 :: stride]  # [N, n_cut]
        ctx, tgt = ctx.reshape(-1, k), tgt.reshape(-1, 1)
        if prefix:
            ctx = torch.cat([ctx.new_full((len(ctx), 1), bos_id), ctx], dim=1)
        b = max(1, max_batch_tokens // ctx.size(1))
        losses = torch.cat(
            [
                _target_losses(model, ctx[i : i + b], tgt[i : i + b], last_only=True)
                for i in range(0, len(ctx), b)
            ]
        )
        out[j, :, start::stride] = losses.view(n, -1).double().cpu()
        if progress is not None:
            progress(f"K={k} ({j + 1}/{len(ks)}): {len(losses):,} targets, {time.monotonic() - began:.0f} s")
    out[:, :, :min_position] = float("nan")
    off_grid = (torch.arange(n_targets) - min_position) % stride != 0
    out[:, :, off_grid] = float("nan")
    model.train(was_training)
    return Truncation(ks, out.numpy(), tuple(first_cut), bos_id is not None)
