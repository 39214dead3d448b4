"""Resuming a stream on a different number of reader slots (world size x workers) without losing or repeating data.

The rule. The readers of an epoch are ``slots = world_size * max(num_workers, 1)``, and which samples a slot reads
is a pure function of ``(seed, epoch, slot, slots)`` (see ``loader.py``). A checkpoint records, for every slot, how
many batches of which epoch it had consumed. When a run resumes with another slot count:

1. the old slots' streams are *replayed* from the same seed up to their recorded positions, which gives the exact
   set of sample keys consumed in each unfinished epoch (replay reads the epoch's shards again: cheap next to
   training, and it needs nothing beyond what the checkpoint already holds);
2. those epochs are then read again by the *new* slots with the consumed keys excluded, split by sample index
   (``j % slots == slot`` over the remaining samples), so every remaining sample of the epoch is seen exactly once;
3. later epochs are split by the normal rule.

This is the sample-level analogue of MosaicML Streaming's "canonical nodes": the order of an epoch is defined
independently of the new world size and what is left of it is divided among whoever resumes. It is written by hand
because webdataset has no notion of resumable position. The exclusions are part of the loader state, so a resharded
run can itself be checkpointed and resumed (again on any slot count).
"""

from __future__ import annotations

from typing import Any, Protocol


class _Replayable(Protocol):
    _exclude: dict[int, frozenset[str]]

    def _epoch_batches(self, epoch: int, slot: int, n_slots: int) -> Any: ...


def slot_positions(rank_states: list[dict]) -> tuple[int, list[tuple[int, int, int]]]:
    """(old slot count, [(slot, epoch, batches consumed in that epoch)]) from every old rank's loader state."""
    workers = max(int(rank_states[0]["num_workers"]), 1)
    positions = []
    for rank, state in enumerate(rank_states):
        if int(state["rank"]) != rank:
            raise ValueError(
                f"loader state of rank {rank} says rank={state['rank']}: states are out of order"
            )
        for worker in range(workers):
            pos = state["workers"].get(str(worker)) or {"epoch": int(state["epoch"]), "batches": 0}
            positions.append((rank * workers + worker, int(pos["epoch"]), int(pos["batches"])))
    return len(rank_states) * workers, positions


def consumed_keys(dataset: _Replayable, rank_states: list[dict]) -> tuple[int, dict[int, frozenset[str]]]:
    """(first unfinished epoch, {epoch: keys consumed in it}) by replaying the old slots' streams."""
    n_old, positions = slot_positions(rank_states)
    first = min(epoch for _, epoch, _ in positions)
    last = max(epoch for _, epoch, _ in positions)
    old_exclude = exclusions_from_state(rank_states[0])
    consumed: dict[int, set[str]] = {e: set(old_exclude.get(e, ())) for e in range(first, last + 1)}
    saved, dataset._exclude = dataset._exclude, old_exclude  # replay exactly what the old run read
    try:
        for slot, epoch, batches in positions:
            for e in range(first, epoch + 1):
                for index, batch in enumerate(dataset._epoch_batches(e, slot, n_old), start=1):
                    if e == epoch and index > batches:
                        break
                    consumed[e].update(sample.key for sample in batch)
    finally:
        dataset._exclude = saved
    return first, {e: frozenset(keys) for e, keys in consumed.items()}


def exclusions_from_state(state: dict) -> dict[int, frozenset[str]]:
    return {int(e): frozenset(keys) for e, keys in state.get("exclude", {}).items()}


def exclusions_to_state(exclude: dict[int, frozenset[str]], from_epoch: int) -> dict[str, list[str]]:
    """JSON form, keeping only epochs that are not finished yet."""
    return {str(e): sorted(keys) for e, keys in sorted(exclude.items()) if e >= from_epoch}
