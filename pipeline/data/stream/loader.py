"""Streaming, length-bucketed, resumable batches from the tar shards written by ``prepare``.

Who reads what. The readers of one epoch are ``world_size * max(num_workers, 1)`` slots, slot
``rank * max(num_workers, 1) + worker_id``. Each epoch first permutes the shard list with ``(seed, epoch)``
(train only), then:

- train, with at least as many shards as slots: slot ``i`` reads shards ``i, i + slots, ...`` of that order;
- otherwise (few shards, and always for valid/test): every slot walks all shards and keeps the samples whose
  running index ``j`` satisfies ``j % slots == i``.

Either way each sample is read by exactly one slot per epoch, and valid/test are seen exactly once in total.

Batching. A slot reads ``bucket_size`` samples (train: through webdataset's shuffle buffer), sorts them by
length and cuts batches greedily so that ``B * max_len_in_batch <= batch_tokens``, then shuffles the batches
(train only). Length of a sample = ``max(len(src), len(tgt) + 1)``, the padded width it needs. All randomness
comes from ``random.Random`` seeded by strings of ``(seed, epoch, slot)``, so the stream is a pure function of
``(seed, epoch, rank, world_size, num_workers)``.

Resuming. Every batch carries its (worker, epoch, batch index) through the DataLoader under ``POSITION_KEY``;
``ShardLoader`` records, per worker, the last consumed position (when the batch leaves it, or when the trainer
calls ``record_position``). ``state_dict()`` saves those positions; a loader given them
via ``load_state_dict`` makes each worker regenerate its epoch and skip the batches already consumed, so
the resumed stream continues at the next unseen batch. With another world size or worker count, the rest of each
unfinished epoch is re-split among the new slots so that every sample is still seen once (``reshard.py``).
A finished (non-infinite) pass advances ``epoch`` by one, so the next pass is reshuffled.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.data.location import is_remote, join
from pipeline.data.manifest import ShardError, check_splits_not_empty, read_manifest
from pipeline.data.memory_spec import MEMORY_TASKS, TOKENS
from pipeline.data.stream.collate import collate_lm, collate_pairs
from pipeline.data.stream.memory_batches import block_rows, collate_memory
from pipeline.data.stream.reshard import consumed_keys, exclusions_from_state, exclusions_to_state
from pipeline.data.stream.shard_io import read_verified, tar_samples
from pipeline.data.stream.worker_errors import unwrapped
from pipeline.data.text import SPLITS

__all__ = ["POSITION_KEY", "ShardDataset", "ShardError", "ShardLoader", "build_loader"]

STATE_VERSION = 1
# Batch key carrying {"worker", "epoch", "batches", "samples"} (the position *after* this batch) out of the workers.
POSITION_KEY = "_position"


# Token ids are raw little-endian int32 (prepare/shard_writer.py); .txt: webdataset's default utf-8 handler.
_DECODE = wds.decode(wds.handle_extension("i32", lambda data: np.frombuffer(data, dtype="<i4")))
_NO_SOURCE = np.zeros(0, dtype="<i4")  # a memory task's sequence: decoder-only


@dataclass
class _Sample:
    key: str
    src: np.ndarray
    tgt: np.ndarray
    src_text: str
    tgt_text: str
    lm: bool = False  # an LM window: tgt holds context + 1 tokens, fed after BOS, no source
    extra: dict | None = None  # a memory task's answers and meta arrays (memory_batches.py); tgt = its tokens

    @property
    def width(self) -> int:
        if self.extra is not None:
            return len(self.tgt)
        return len(self.tgt) if self.lm else max(len(self.src), len(self.tgt) + 1)


class ShardDataset(IterableDataset):
    """Yields ready batches (dicts of tensors) for one rank; see the module docstring for the rules."""

    def __init__(self, data_dir: str | Path, split: str, *, batch_tokens: int, max_len: int | None = None,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, seed: int = 0, epoch: int = 0,
                 infinite: bool = False, bucket_size: int = 1024, shuffle: bool | None = None,
                 with_text: bool = False) -> None:  # fmt: skip
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.location = str(data_dir)  # a local dir or a remote location (location.py)
        self.data_dir = self.location if is_remote(data_dir) else Path(data_dir)
        self.manifest = read_manifest(self.data_dir)
        self.lm = self.manifest.get("task") == "lm"
        self.memory = self.manifest.get("task") if self.manifest.get("task") in MEMORY_TASKS else None
        if self.lm and max_len is not None and max_len < self.manifest["max_len"]:
            raise ValueError(
                f"max_len={max_len} is below the LM context {self.manifest['max_len']} of {self.data_dir}: every "
                "window would be dropped (pass max_len=None or the context for data.task=lm)"
            )
        whole = (
            self.memory is not None
        )  # stored as fed: no BOS/EOS added (an LM window: BOS + context tokens)
        longest = min(max_len or self.manifest["max_len"], self.manifest["max_len"]) + (not whole)
        if batch_tokens < longest:
            raise ValueError(
                f"batch_tokens={batch_tokens} is below the widest possible sample ({longest} tokens)"
            )
        self.split, self.batch_tokens, self.max_len = split, batch_tokens, max_len
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.seed, self.epoch, self.infinite, self.bucket_size = seed, epoch, infinite, max(bucket_size, 1)
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.with_text = with_text
        self.shards = self.manifest["splits"][split]["shards"]
        self.vocab_size = int(self.manifest["vocab_size"])
        if infinite and not self.shards:
            check_splits_not_empty(
                self.manifest, str(self.data_dir)
            )  # an endless loop over nothing otherwise
        for shard in self.shards if not is_remote(data_dir) else ():  # remote: a missing shard fails its read
            if not Path(join(self.location, shard["path"])).is_file():
                raise ShardError(
                    f"shard missing: {join(self.location, shard['path'])} (listed in the manifest)"
                )
        self._positions: dict[int, dict] = {}  # worker -> last consumed position (main process)
        self._resume: dict[int, dict] = {}  # worker -> position to skip to on the next pass
        self._exclude: dict[int, frozenset[str]] = {}  # epoch -> keys already consumed before a reshard

    # ---- resumable state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Epoch and per-worker consumed position; JSON-serialisable for checkpoints."""
        return {
            "version": STATE_VERSION,
            "split": self.split,
            "seed": self.seed,
            "epoch": self.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": self.num_workers,
            "workers": {str(w): dict(p) for w, p in sorted(self._positions.items())},
            "exclude": exclusions_to_state(self._exclude, min([self.epoch, *self._position_epochs()])),
        }

    def _position_epochs(self) -> list[int]:
        return [int(p["epoch"]) for p in self._positions.values()]

    def load_state_dict(self, state: dict) -> None:
        """Make the next pass continue after what ``state`` says was consumed.

        ``state`` is this rank's ``state_dict()``, or ``{"ranks": [state of rank 0, state of rank 1, ...]}``
        (ranks progress differently, so a DDP checkpoint must hold every rank's state, not only rank 0's).
        """
        if "ranks" in state:
            ranks = state["ranks"]
            if len(ranks) != self.world_size or int(ranks[0]["num_workers"]) != self.num_workers:
                self._reshard(ranks)
                return
            state = ranks[self.rank]
        for key in ("split", "seed", "rank", "world_size", "num_workers"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"loader state has {key}={state.get(key)!r} but this loader has {getattr(self, key)!r}; "
                    "resuming with a different split, seed, world size or worker count is not supported yet "
                    "(and each rank needs its own state)"
                )
        self.epoch = int(state["epoch"])
        self._positions = {int(w): dict(p) for w, p in state["workers"].items()}
        self._resume = {w: dict(p) for w, p in self._positions.items()}
        self._exclude = exclusions_from_state(state)

    def _reshard(self, rank_states: list[dict]) -> None:
        """Continue another slot count's stream: see ``reshard.py`` for the rule."""
        for key in ("split", "seed"):
            if rank_states[0].get(key) != getattr(self, key):
                raise ValueError(
                    f"loader state has {key}={rank_states[0].get(key)!r}, this loader {getattr(self, key)!r}"
                )
        self.epoch, self._exclude = consumed_keys(self, rank_states)
        self._positions, self._resume = {}, {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._positions, self._resume = epoch, {}, {}

    def record_position(self, position: dict) -> None:
        """Mark everything up to and including the batch that carried ``position`` as consumed."""
        worker = int(position["worker"])
        self._positions[worker] = {k: int(position[k]) for k in ("epoch", "batches", "samples")}

    # ---- iteration -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        # Read the resume point now, not lazily in the generator: ShardLoader clears it right after `iter()`.
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if n_workers != max(self.num_workers, 1):
            raise ValueError(
                f"dataset built for num_workers={self.num_workers} runs with {n_workers} workers"
            )
        start = self._resume.get(worker, {"epoch": self.epoch, "batches": 0, "samples": 0})
        return self._generate(worker, n_workers, dict(start))

    def _generate(self, worker: int, n_workers: int, start: dict) -> Iterator[dict]:
        epoch, skip, samples = start["epoch"], start["batches"], start["samples"]
        slot, n_slots = self.rank * n_workers + worker, self.world_size * n_workers
        while True:
            index = 0
            for index, batch in enumerate(self._epoch_batches(epoch, slot, n_slots), start=1):
                if index <= skip:
                    continue
                samples += len(batch)
                position = {"worker": worker, "epoch": epoch, "batches": index, "samples": samples}
                yield {**self._collate(batch), POSITION_KEY: position}
            if not self.infinite:
                return
            if index == 0:  # an infinite stream over an empty epoch would spin forever
                raise ShardError(
                    f"{self.split} split of {self.data_dir} gives reader slot {slot} of {n_slots} (rank "
                    f"{self.rank}, worker {worker}) no samples in epoch {epoch}: "
                    f"{self.manifest['splits'][self.split]['samples']} samples"
                    + (f" before the max_len={self.max_len} filter" if self.max_len is not None else "")
                    + "; use fewer ranks/workers or more data"
                )
            epoch, skip, samples = epoch + 1, 0, 0

    def _epoch_batches(self, epoch: int, slot: int, n_slots: int) -> Iterator[list[_Sample]]:
        rng = random.Random(f"{self.seed}-{epoch}-{slot}-batches")
        samples = self._slot_samples(epoch, slot, n_slots)
        if self.shuffle:
            samples = wds.shuffle(
                self.bucket_size, self.bucket_size, rng=random.Random(f"{self.seed}-{epoch}-{slot}")
            )(samples)
        bucket: list[_Sample] = []
        for sample in samples:
            bucket.append(sample)
            if len(bucket) >= self.bucket_size:
                yield from self._cut(bucket, rng)
                bucket = []
        if bucket:
            yield from self._cut(bucket, rng)

    def _cut(self, bucket: list[_Sample], rng: random.Random) -> list[list[_Sample]]:
        """Sort by width and cut so that batch size x widest sample <= batch_tokens."""
        bucket.sort(key=lambda s: (s.width, s.key))
        batches: list[list[_Sample]] = [[]]
        for sample in bucket:
            if batches[-1] and (len(batches[-1]) + 1) * sample.width > self.batch_tokens:
                batches.append([])
            batches[-1].append(sample)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _slot_samples(self, epoch: int, slot: int, n_slots: int) -> Iterator[_Sample]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}-{epoch}-shards").shuffle(shards)
        excluded = self._exclude.get(epoch)
        by_shard = self.split == "train" and len(shards) >= n_slots and excluded is None
        mine = shards[slot::n_slots] if by_shard else shards
        index = 0
        for shard in mine:
            for sample in self._read_shard(shard):
                if excluded is not None and sample.key in excluded:
                    continue  # consumed before a reshard; the rest is split by sample index
                index += 1
                if not by_shard and (index - 1) % n_slots != slot:
                    continue
                if (
                    not self.lm
                    and self.max_len is not None
                    and max(len(sample.src), len(sample.tgt)) > self.max_len
                ):
                    continue
                yield sample

    def read_samples(self) -> Iterator[_Sample]:
        """Every sample of the split in shard order (as prepared; no rank split, shuffle or filter), each shard
        verified: for readers of a whole split (lm_windows.py)."""
        for shard in self.shards:
            yield from self._read_shard(shard)

    def _read_shard(self, shard: dict) -> Iterator[_Sample]:
        """Decode one tar shard with webdataset (a memory task's blocks cut into sequences, which are what it counts);
        any failure, a short count or an id out of range names it.

        The whole shard is read and its sha256 checked against the manifest before any sample is decoded, so a
        damaged or foreign shard never trains a single sample (one read: the bytes are parsed from memory).
        """
        path = join(self.location, shard["path"])
        data = read_verified(path, shard)
        count = 0
        try:
            for raw in _DECODE(tar_samples(data, path)):
                for sample in self._samples(raw, path):
                    count += 1
                    yield sample
        except ShardError:
            raise
        except Exception as exn:
            raise ShardError(f"corrupt shard {path}: {type(exn).__name__}: {exn}") from exn
        if count != shard["samples"]:
            raise ShardError(f"corrupt shard {path}: read {count} samples, manifest says {shard['samples']}")

    def _samples(self, raw: dict, path: str) -> Iterator[_Sample]:
        """One decoded tar sample -> its samples: itself, or a memory task's block cut into its sequences; an id
        outside the vocabulary names the sample (or block)."""
        if self.memory:
            self._check_ids(path, f"block {raw['__key__']}", raw[TOKENS])  # once, not once a sequence
            for key, tokens, extra in block_rows(raw, self.memory):
                yield _Sample(key, _NO_SOURCE, tokens, "", "", extra=extra)
            return
        sample = _Sample(
            raw["__key__"], raw["src.i32"], raw["tgt.i32"], raw["src.txt"], raw["tgt.txt"], self.lm
        )
        self._check_ids(path, f"sample {sample.key}", sample.src, sample.tgt)
        yield sample

    def _check_ids(self, path: str, what: str, *sides: np.ndarray) -> None:
        for side in sides:
            if len(side) and (int(side.max()) >= self.vocab_size or int(side.min()) < 0):
                bad = int(side.max()) if int(side.max()) >= self.vocab_size else int(side.min())
                raise ShardError(
                    f"shard {path}, {what}: token id {bad} is outside the vocabulary (vocab_size={self.vocab_size})"
                )

    def _collate(self, batch: list[_Sample]) -> dict:
        """One batch as tensors (`collate.py`; memory tasks: `memory_batches.py`), naming its samples (``keys``)."""
        if self.memory:  # decoder-only, answers in tgt_out
            out = collate_memory([x.tgt for x in batch], [x.extra for x in batch])
            return {**out, "keys": [x.key for x in batch]}
        out = collate_lm(batch) if self.lm else collate_pairs(batch)
        if self.with_text:
            out["src_text"] = [x.src_text for x in batch]
            out["tgt_text"] = [x.tgt_text for x in batch]
        return out


class ShardLoader(DataLoader):
    """A ``DataLoader(batch_size=None)`` that tracks what was consumed, for ``state_dict`` / resume.

    With ``record_on_yield`` (default) a batch counts as consumed when it leaves the loader, and its position key
    is removed. Without it the batch keeps ``batch[POSITION_KEY]`` and the caller passes it to
    ``record_position`` once the batch is really used (Lightning fetches one batch ahead of the step it trains).
    """

    dataset: ShardDataset

    def __init__(self, dataset: ShardDataset, *, num_workers: int = 0, record_on_yield: bool = True) -> None:
        # A private generator: creating an iterator draws a base seed, and drawing it from the global torch RNG
        # would shift the dropout masks of a resumed run (validation creates an iterator at every check).
        super().__init__(dataset, batch_size=None, num_workers=num_workers, generator=torch.Generator())
        self.record_on_yield = record_on_yield

    def __iter__(self) -> Iterator[dict]:
        dataset = self.dataset
        iterator = super().__iter__()  # workers (or the in-process fetcher) snapshot the resume point here
        dataset._resume = {}
        try:
            for batch in iterator:
                if self.record_on_yield:
                    dataset.record_position(batch.pop(POSITION_KEY))
                yield batch
        except (ShardError, ValueError, OSError) as err:  # from a worker process: the in-process message
            clean = unwrapped(err)
            if clean is None:
                raise
            raise clean from err
        dataset.set_epoch(dataset.epoch + 1)  # a finished pass: the next one reshuffles

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)

    def record_position(self, position: dict) -> None:
        self.dataset.record_position(position)


def build_loader(data_dir: str | Path, split: str, *, batch_tokens: int, max_len: int | None = None, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, seed: int = 0, epoch: int = 0, infinite: bool = False,
                 bucket_size: int = 1024, shuffle: bool | None = None, with_text: bool = False,
                 record_on_yield: bool = True) -> ShardLoader:  # fmt: skip
    """Batches of ``split`` for one rank (see the module docstring); every batch names its samples (``keys``),
    ``with_text`` adds their texts (BLEU).

    ``max_len`` drops samples with more tokens on either side (None: keep all, ``prepare`` already capped them).
    ``shuffle`` defaults to True for train only. ``record_on_yield``: see ``ShardLoader``.
    """
    dataset = ShardDataset(data_dir, split, batch_tokens=batch_tokens, max_len=max_len, rank=rank,
                           world_size=world_size, num_workers=num_workers, seed=seed, epoch=epoch, infinite=infinite,
                           bucket_size=bucket_size, shuffle=shuffle, with_text=with_text)  # fmt: skip
    return ShardLoader(dataset, num_workers=num_workers, record_on_yield=record_on_yield)
