"""Resuming the stream on another world size / worker count: every remaining sample of the epoch is seen once."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.data.prepare.build import prepare
from pipeline.data.stream.loader import build_loader
from tests.unit.data_fixtures import write_parallel

BT = 200


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reshard")
    src, tgt = write_parallel(root, n=400)
    # small shards: 16+ shards, so train is split by shard across slots (the harder case to re-split)
    prepare(f"parallel:{src}|{tgt}", root / "d", vocab_size=300, max_len=64, shard_size=20)
    return root / "d"


def loader(data_dir: Path, rank: int, world: int, workers: int = 0):
    return build_loader(data_dir, "train", batch_tokens=BT, rank=rank, world_size=world, num_workers=workers,
                        seed=5, with_text=True)  # fmt: skip


def take_keys(ld, n: int | None) -> list[str]:
    """Keys of the next `n` batches (all if None); islice pulls exactly n, so nothing extra counts as consumed."""
    return [k for batch in itertools.islice(ld, n) for k in batch["keys"]]


def epoch_keys(data_dir: Path) -> list[str]:
    return take_keys(loader(data_dir, 0, 1), None)


def checkpoint(loaders) -> dict:
    """What the trainer saves: every rank's state, through a JSON round trip."""
    return json.loads(json.dumps({"ranks": [ld.state_dict() for ld in loaders]}))


@pytest.mark.parametrize(("old", "new", "workers"), [(2, 1, 0), (1, 3, 0), (2, 3, 2)])
def test_remaining_samples_seen_exactly_once_after_world_size_change(
    data_dir: Path, old: int, new: int, workers: int
):
    everything = Counter(epoch_keys(data_dir))
    olds = [loader(data_dir, r, old) for r in range(old)]
    seen = []
    for r, ld in enumerate(olds):
        seen += take_keys(ld, 2 + r)  # ranks progress unevenly
    state = checkpoint(olds)
    news = [loader(data_dir, r, new, workers) for r in range(new)]
    for ld in news:
        ld.load_state_dict(state)
    remaining = [k for ld in news for k in take_keys(ld, None)]  # the rest of the epoch
    assert not set(seen) & set(remaining), "a consumed sample was served again"
    assert Counter(seen + remaining) == everything, "samples lost or repeated across the world-size change"


def test_resharded_run_can_checkpoint_and_reshard_again(data_dir: Path) -> None:
    everything = Counter(epoch_keys(data_dir))
    first = [loader(data_dir, r, 2) for r in range(2)]
    seen = take_keys(first[0], 3) + take_keys(first[1], 1)
    second = [loader(data_dir, r, 3) for r in range(3)]
    state = checkpoint(first)
    for ld in second:
        ld.load_state_dict(state)
    for ld in second:
        seen += take_keys(ld, 1)
    third = [loader(data_dir, 0, 1)]
    third[0].load_state_dict(checkpoint(second))
    seen += take_keys(third[0], None)
    assert Counter(seen) == everything


def test_same_world_size_state_still_resumes_batch_exactly(data_dir: Path) -> None:
    straight = [b["keys"] for b in loader(data_dir, 1, 2)]
    ld = loader(data_dir, 1, 2)
    take_keys(ld, 3)
    other = loader(data_dir, 0, 2)
    resumed = loader(data_dir, 1, 2)
    resumed.load_state_dict(checkpoint([other, ld]))
    assert [b["keys"] for b in resumed] == straight[3:]
