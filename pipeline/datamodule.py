"""LightningDataModule over the streaming shard loader: the trainer-side glue (data itself knows nothing of Lightning).

The train stream is infinite (epochs repeat, reshuffled), so DDP ranks never run out at different times and
training length is set by `train.max_steps` alone. The position in that stream (batches consumed) is saved in
every checkpoint through `state_dict()` and skipped on resume, so a resumed run does not see its first batches again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L

from pipeline.config import RunConfig
from pipeline.data.loader import build_loader
from pipeline.data.prepare import ensure_prepared


class CountingIterable:
    """Counts batches handed to the trainer (in the main process, so it is right with worker processes too)."""

    def __init__(self, make_loader: Any, skip: int = 0) -> None:
        self.make_loader = make_loader
        self.consumed = skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.make_loader(self.consumed):
            self.consumed += 1
            yield batch


class StreamingDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._train: CountingIterable | None = None
        self._resume_consumed = 0

    def prepare_data(self) -> None:
        d = self.cfg.data
        ensure_prepared(d.dir, corpus=d.corpus, vocab_size=d.vocab_size, max_len=d.max_len)

    def _loader(self, split: str, infinite: bool, skip_batches: int = 0) -> Any:
        d, trainer = self.cfg.data, self.trainer
        return build_loader(
            d.dir,
            split,
            batch_tokens=d.batch_tokens,
            max_len=d.max_len,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            num_workers=d.num_workers if split == "train" else 0,
            seed=self.cfg.seed,
            infinite=infinite,
            bucket_size=d.bucket_size,
            skip_batches=skip_batches,
        )

    def train_dataloader(self) -> CountingIterable:
        self._train = CountingIterable(lambda skip: self._loader("train", True, skip), self._resume_consumed)
        return self._train

    def val_dataloader(self) -> Any:
        return self._loader("valid", False)

    def test_dataloader(self) -> Any:
        return self._loader("test", False)

    def state_dict(self) -> dict[str, Any]:
        consumed = self._train.consumed if self._train is not None else self._resume_consumed
        return {"train_batches_consumed": consumed, "world_size": self.trainer.world_size if self.trainer else 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_consumed = int(state.get("train_batches_consumed", 0))
