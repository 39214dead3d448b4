"""LightningDataModule over the streaming shard loader: the trainer-side glue (data itself knows nothing of Lightning).

The train stream is infinite (epochs repeat, reshuffled), so DDP ranks never run out at different times and
training length is set by `train.max_steps` alone.

Resume position. `ShardLoader` is stateful, and Lightning saves its `state_dict()` in every checkpoint and loads it
back on resume (fit loop "combined_loader" state). But Lightning fetches one batch *ahead* of the step it trains,
so a position recorded when a batch leaves the loader is one batch early. We therefore record the position of a
batch only when its optimisation step has finished (`LoaderPositionCallback`), which makes a resumed run continue
at exactly the next batch the interrupted run would have trained on.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from pipeline.config import RunConfig
from pipeline.data.loader import POSITION_KEY, build_loader
from pipeline.data.prepare import ensure_prepared


class StreamingDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def prepare_data(self) -> None:
        d = self.cfg.data
        ensure_prepared(d.dir, corpus=d.corpus, vocab_size=d.vocab_size, max_len=d.max_len, limit=d.limit or None)

    def _loader(self, split: str, infinite: bool) -> Any:
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
            record_on_yield=split != "train",
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    def val_dataloader(self) -> Any:
        return self._loader("valid", False)

    def test_dataloader(self) -> Any:
        return self._loader("test", False)


class LoaderPositionCallback(L.Callback):
    """Moves each train batch's stream position out of the batch, and records it once the batch is trained."""

    def __init__(self) -> None:
        self._pending: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: dict, batch_idx: int) -> None:
        self._pending = batch.pop(POSITION_KEY, None)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int) -> None:
        loader = trainer.train_dataloader
        if self._pending is not None and hasattr(loader, "record_position"):
            loader.record_position(self._pending)
        self._pending = None
