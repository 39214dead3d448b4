"""Reading a known-truth memory task's shards: a block's sequences and the decoder-only batch.

The members (written by ``prepare/memory_shards.py``) are named in ``memory_spec.py``: a tar sample is a block of
many sequences, which ``block_rows`` cuts back into one (key, tokens, answers and meta) per sequence as the shard is
read, so that the loader's shuffle buffer, bucketing, reader slots and resume positions see sequences. The batch is
the language model's (``collate.collate_lm``: an empty source) with ``tgt_in`` the tokens, ``tgt_out`` the answers
and ``meta`` the per-position meta, all right-padded to the batch's longest sample. Beside the loader, which calls
it; apart from the writer, so the loader imports no preparation code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pipeline.data.memory_spec import (
    ANSWERS,
    BLOCK_KEYS,
    BLOCK_LENGTHS,
    META_KEYS,
    PAD_ID,
    TOKENS,
    meta_member,
)


def block_rows(raw: dict[str, Any], task: str) -> Iterator[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """(key, tokens, {"ans": answers, meta name: values}) of every sequence of one decoded block (``raw``:
    webdataset's dict of members), in stored order; the arrays are views into the block's. A block whose members
    do not add up is a ValueError naming it (the loader reports it as a corrupt shard)."""
    keys = raw[BLOCK_KEYS].split("\n")
    lengths = raw[BLOCK_LENGTHS]
    columns = {"ans": raw[ANSWERS], **{name: raw[meta_member(name)] for name in META_KEYS[task]}}
    total = int(lengths.sum())
    if len(keys) != len(lengths) or any(len(a) != total for a in (raw[TOKENS], *columns.values())):
        raise ValueError(
            f"block {raw['__key__']}: {len(keys)} keys, {len(lengths)} lengths summing to {total}, members of "
            f"{sorted({len(a) for a in (raw[TOKENS], *columns.values())})} values"
        )
    ends = np.cumsum(lengths).tolist()
    spans = list(zip([0, *ends[:-1]], ends, strict=True))  # slicing by hand: np.split costs ~1 ms a block
    tokens = raw[TOKENS]
    for key, (lo, hi) in zip(keys, spans, strict=True):
        yield key, tokens[lo:hi], {name: values[lo:hi] for name, values in columns.items()}


def collate_memory(tokens: list[np.ndarray], extras: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Samples -> a decoder-only batch: tgt_in [B, T], tgt_out [B, T] (pad 0 off answers), meta[name] [B, T]
    (-1 off answers and on padding), an empty source; ``n_tokens`` counts the input tokens (the positions the
    recurrence or attention runs over), ``n_answers`` the scored ones."""
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    n, width = len(tokens), int(lengths.max())
    real = np.arange(width) < lengths[:, None]  # row-major, so the rows' values fill it in order

    def padded(rows: list[np.ndarray], fill: int) -> torch.Tensor:  # one scatter, not a copy per row
        out = np.full((n, width), fill, dtype=np.int64)
        out[real] = np.concatenate(rows)
        return torch.from_numpy(out)

    tgt_in = padded(tokens, PAD_ID)
    tgt_out = padded([extra["ans"] for extra in extras], PAD_ID)
    meta = {name: padded([extra[name] for extra in extras], -1) for name in extras[0] if name != "ans"}
    return {
        "src": torch.zeros((n, 0), dtype=torch.long),
        "src_mask": torch.zeros((n, 0), dtype=torch.bool),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "meta": meta,
        "n_tokens": int(lengths.sum()),
        "n_src_tokens": 0,
        "n_answers": int((tgt_out != PAD_ID).sum()),
    }
