"""Reading a known-truth memory task's shards (issue 31): a sample's members and the decoder-only batch.

The members (written by ``prepare/memory_shards.py``) are named in ``memory_spec.py``. The batch is the language
model's (``collate.collate_lm``: an empty source) with ``tgt_in`` the tokens, ``tgt_out`` the answers and ``meta``
the per-position meta, all right-padded to the batch's longest sample. Beside the loader, which calls it; apart
from the writer, so the loader imports no preparation code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.data.memory_spec import ANSWERS, META_KEYS, PAD_ID, meta_member


def sample_extra(raw: dict[str, Any], task: str) -> dict[str, np.ndarray]:
    """The answers and meta arrays of one decoded sample (``raw``: webdataset's dict of members)."""
    return {"ans": raw[ANSWERS], **{name: raw[meta_member(name)] for name in META_KEYS[task]}}


def collate_memory(tokens: list[np.ndarray], extras: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Samples -> a decoder-only batch: tgt_in [B, T], tgt_out [B, T] (pad 0 off answers), meta[name] [B, T]
    (-1 off answers and on padding), an empty source; ``n_tokens`` counts the input tokens (the positions the
    recurrence or attention runs over), ``n_answers`` the scored ones."""
    n, width = len(tokens), max(len(t) for t in tokens)
    tgt_in = torch.full((n, width), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((n, width), PAD_ID, dtype=torch.long)
    meta = {name: torch.full((n, width), -1, dtype=torch.long) for name in extras[0] if name != "ans"}
    for i, (tok, extra) in enumerate(zip(tokens, extras, strict=True)):
        tgt_in[i, : len(tok)] = torch.from_numpy(tok.astype(np.int64))
        tgt_out[i, : len(tok)] = torch.from_numpy(extra["ans"].astype(np.int64))
        for name, values in meta.items():
            values[i, : len(tok)] = torch.from_numpy(extra[name].astype(np.int64))
    return {
        "src": torch.zeros((n, 0), dtype=torch.long),
        "src_mask": torch.zeros((n, 0), dtype=torch.bool),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "meta": meta,
        "n_tokens": int(sum(len(t) for t in tokens)),
        "n_src_tokens": 0,
        "n_answers": int((tgt_out != PAD_ID).sum()),
    }
