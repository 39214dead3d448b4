"""The data a run config describes: prepared once from `cfg.data`, and the task's sequence widths.

One place, because the trainer, the sweep planner, the demo and the test fixtures must prepare the same data dir
with the same keys (`data.task`, `data.context`, `data.passage_len` included), and the per-position statistics
(loss by position, per-token validation losses, the sweep's position counts) must agree on their width.
Imports neither Lightning nor torch, so `pipeline sweep --dry-run` stays light.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import MEMORY_TASKS, DataConfig, memory_spec_of, sequence_len

__all__ = ["loader_max_len", "prepare_run_data", "sequence_len", "target_width"]


def prepare_run_data(data: DataConfig) -> dict[str, Any]:
    """`data.dir`'s manifest, preparing `data.corpus` there first if needed (a mismatch is a ValueError)."""
    if data.task in MEMORY_TASKS:  # generated, not read from a corpus
        from pipeline.data.prepare.memory_shards import ensure_memory_prepared

        return ensure_memory_prepared(data.dir, memory_spec_of(data))
    from pipeline.data.prepare.build import ensure_prepared

    return ensure_prepared(
        data.dir,
        corpus=data.corpus,
        vocab_size=data.vocab_size,
        max_len=data.max_len,
        limit=data.limit or None,
        task=data.task,
        passage_len=data.passage_len if data.task == "passages" else None,
        context=data.context if data.task == "lm" else None,
    )


def loader_max_len(data: DataConfig) -> int:
    """The loader's length filter: the LM window, the passage side, or `data.max_len` (prepare already capped)."""
    return sequence_len(data)


def target_width(data: DataConfig) -> int:
    """Target positions of a batch's `tgt_out`: the LM window (no EOS), a memory task's longest sequence, else the
    longest target + EOS."""
    return sequence_len(data) + (data.task not in ("lm", *MEMORY_TASKS))
