"""LightningDataModule over the streaming shard loader: the trainer-side glue (data itself knows nothing of Lightning).

The train stream is infinite (epochs repeat, reshuffled), so DDP ranks never run out at different times and
training length is set by `train.max_steps` alone.

Resume position. Each rank's loader knows how far it got (`ShardLoader.state_dict()`); this module saves *every*
rank's state in the checkpoint (Lightning would save only rank 0's) and hands each rank its own on resume, or lets
the loader re-split the rest of the epoch when the world size changed (`pipeline/data/stream/reshard.py`). Lightning
fetches one batch *ahead* of the step it trains, so a position is recorded only once its batch has been trained on
(`LoaderPositionCallback`): a resumed run continues at exactly the batch the interrupted run would have trained next.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L

from pipeline.config import RunConfig
from pipeline.data.stream.loader import POSITION_KEY, ShardLoader, build_loader
from pipeline.training.checkpoint_callbacks import gather_objects
from pipeline.training.run_data import loader_max_len, prepare_run_data


class TrainStream:
    """The train loader behind an object Lightning does not treat as stateful, so the datamodule owns its state."""

    def __init__(self, loader: ShardLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.loader)

    def record_position(self, position: dict[str, Any]) -> None:
        self.loader.record_position(position)


class StreamingDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._train: TrainStream | None = None
        self._resume_state: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        prepare_run_data(self.cfg.data)

    def setup(self, stage: str) -> None:
        """Every rank checks the prepared data before its first batch (manifest, tokenizer hash, split counts,
        shard list; shard hashes are checked as each shard is opened): `prepare_data` runs on one rank only, and a
        node may see another file system than the one that prepared the data."""
        from pipeline.data.stream.verify import verify_prepared

        verify_prepared(self.cfg.data.dir)

    def _loader(self, split: str, infinite: bool) -> ShardLoader:
        d, trainer = self.cfg.data, self.trainer
        return build_loader(
            d.dir,
            split,
            batch_tokens=d.batch_tokens,
            max_len=loader_max_len(d),
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            num_workers=d.num_workers if split == "train" else 0,
            seed=self.cfg.seed,
            infinite=infinite,
            bucket_size=d.bucket_size,
            record_on_yield=split != "train",
        )

    def train_dataloader(self) -> TrainStream:
        loader = self._loader("train", True)
        if self._resume_state is not None:
            loader.load_state_dict(self._resume_state)  # this rank's state, or a re-split of the epoch's rest
            self._resume_state = None
        self._train = TrainStream(loader)
        return self._train

    def val_dataloader(self) -> ShardLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> ShardLoader:
        return self._loader("test", False)

    def state_dict(self) -> dict[str, Any]:
        """Every rank's train-loader position (a collective: Lightning calls this on all ranks when saving)."""
        local = self._train.loader.state_dict() if self._train is not None else None
        states = gather_objects(local)
        return {"train_loader": {"ranks": states}} if all(s is not None for s in states) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_state = state.get("train_loader")


class LoaderPositionCallback(L.Callback):
    """Moves each train batch's stream position out of the batch, and records it once the batch is trained."""

    def __init__(self) -> None:
        self._pending: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: dict, batch_idx: int) -> None:
        self._pending = batch.pop(POSITION_KEY, None)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        loader = trainer.train_dataloader
        if self._pending is not None and hasattr(loader, "record_position"):
            loader.record_position(self._pending)
        self._pending = None
