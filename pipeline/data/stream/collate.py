"""A batch of samples as the tensors the models read: translation pairs and LM windows (memory tasks:
`memory_batches.py`). Every batch names its samples (``keys``): per-token validation losses name rows by them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def collate_pairs(batch: Sequence[Any]) -> dict:
    """Right-pad with PAD_ID; tgt_in = BOS + tgt, tgt_out = tgt + EOS."""
    n, s_len, t_len = len(batch), max(len(x.src) for x in batch), max(len(x.tgt) for x in batch) + 1
    src = torch.full((n, s_len), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((n, t_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((n, t_len), PAD_ID, dtype=torch.long)
    src_mask = torch.zeros((n, s_len), dtype=torch.bool)
    for i, x in enumerate(batch):
        src[i, : len(x.src)] = torch.from_numpy(x.src.astype(np.int64))
        src_mask[i, : len(x.src)] = True
        tgt = torch.from_numpy(x.tgt.astype(np.int64))
        tgt_in[i, 0], tgt_in[i, 1 : len(tgt) + 1] = BOS_ID, tgt
        tgt_out[i, : len(tgt)], tgt_out[i, len(tgt)] = tgt, EOS_ID
    return {
        "src": src,
        "src_mask": src_mask,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "n_tokens": sum(len(x.tgt) + 1 for x in batch),
        "n_src_tokens": sum(len(x.src) for x in batch),
        "keys": [x.key for x in batch],
    }


def collate_lm(batch: Sequence[Any]) -> dict:
    """LM windows (all ``context + 1`` long, disjoint): tgt_in = [BOS] + window[:-1], tgt_out = window, an
    empty source. Every window token is a target; the first is predicted from BOS alone, as at a document
    start, so no architecture meets a mid-document token at position 0."""
    windows = torch.from_numpy(np.stack([x.tgt for x in batch]).astype(np.int64))
    n = len(batch)
    bos = torch.full((n, 1), BOS_ID, dtype=torch.long)
    return {
        "src": torch.zeros((n, 0), dtype=torch.long),
        "src_mask": torch.zeros((n, 0), dtype=torch.bool),
        "tgt_in": torch.cat([bos, windows[:, :-1]], dim=1),
        "tgt_out": windows.contiguous(),
        "n_tokens": int(windows.numel()),
        "n_src_tokens": 0,
        "keys": [x.key for x in batch],
    }
