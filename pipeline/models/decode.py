"""Greedy decoding for any registered model: incremental (the default) and the full re-run it replaced.

`greedy_decode` encodes once and feeds one token per step through `model.decode_step`, which carries the LSTM
state or the Transformer's key/value cache: O(1) (recurrent) or O(t) (attention) work per step. The old
`greedy_decode_full_rerun` re-runs the whole decoder over the growing prefix (O(t) resp. O(t^2) per step); it stays
as the model-agnostic reference that the tests and `benchmarks/bench_decode.py` compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from pipeline.models.base import Seq2SeqModel


@contextmanager
def eval_mode(model: Seq2SeqModel) -> Iterator[None]:
    """Decode without dropout, then give the caller back the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len={max_len}: must be >= 1")


def _greedy_loop(
    next_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: int,
    device: torch.device,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
) -> torch.Tensor:
    """Argmax until every row has emitted EOS or max_len tokens; next_logits(ys, last_token) -> Float[B,V]."""
    ys = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = next_logits(ys, ys[:, -1]).argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return ys[:, 1:]


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqModel, src: torch.Tensor, src_mask: torch.Tensor, bos_id: int, eos_id: int, max_len: int
) -> torch.Tensor:
    """Argmax decoding -> Long[B, <=max_len] of tokens after BOS; after a row's EOS the rest is pad_id.

    Incremental: one `decode_step` per token. Runs in eval mode (no dropout) and restores the caller's mode.
    """
    check_max_len(max_len)
    with eval_mode(model):
        state = model.start_decoding(src, src_mask)

        def next_logits(_: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
            nonlocal state
            logits, state = model.decode_step(last, state)
            return logits

        return _greedy_loop(
            next_logits, src.size(0), src.device, bos_id, eos_id, model.config.pad_id, max_len
        )


@torch.no_grad()
def greedy_decode_full_rerun(
    model: Seq2SeqModel, src: torch.Tensor, src_mask: torch.Tensor, bos_id: int, eos_id: int, max_len: int
) -> torch.Tensor:
    """The reference: same output as `greedy_decode`, by re-running forward on the whole prefix every step."""
    check_max_len(max_len)
    with eval_mode(model):
        return _greedy_loop(
            lambda ys, _: model(src, src_mask, ys)[:, -1],
            src.size(0),
            src.device,
            bos_id,
            eos_id,
            model.config.pad_id,
            max_len,
        )
