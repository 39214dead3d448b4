"""Greedy decoding for any registered model."""

from __future__ import annotations

import torch

from pipeline.models.base import Seq2SeqModel


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqModel, src: torch.Tensor, src_mask: torch.Tensor, bos_id: int, eos_id: int, max_len: int
) -> torch.Tensor:
    """Argmax decoding -> Long[B, <=max_len] of tokens after BOS; after a row's EOS the rest is pad_id.

    Re-runs the full forward on the growing prefix each step: O(max_len^2) but model-agnostic, and only
    used for validation BLEU and samples, where a per-architecture incremental cache isn't worth the code.
    Runs in eval mode (no dropout) and restores the caller's mode.
    """
    if max_len < 1:
        raise ValueError(f"max_len={max_len}: must be >= 1")
    pad_id = model.config.pad_id
    was_training = model.training
    model.eval()
    try:
        ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            nxt = model(src, src_mask, ys)[:, -1].argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        return ys[:, 1:]
    finally:
        model.train(was_training)
