"""The windows of a prepared LM split as one array, for the scorers that need them whole.

The truncation evaluation, the Kneser-Ney floors and the train-unigram yardstick score or count every window of a
split, not batches: ``lm_windows`` reads them straight from the verified shards. Held-out splits come back in key
order (``w00000000``...: corpus order, the order of ``manifest["windows"][split]``, the cluster ids); the train
split in shard order, which is the order preparation shuffled the windows into (``sources/lm.py``), so its first
n windows are a random sample of the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.manifest import check_format, rebuild_hint
from pipeline.data.stream.loader import ShardDataset


@dataclass
class LmWindows:
    keys: list[str]
    tokens: np.ndarray  # int64 [N, context + 1]: every token a target, fed after BOS


def lm_windows(data_dir: str | Path, split: str, max_windows: int | None = None) -> LmWindows:
    """The split's windows (at most ``max_windows``, the first in the order above); one clear error for data that
    is not LM data of this format."""
    dataset = ShardDataset(data_dir, split, batch_tokens=1 << 30)
    check_format(dataset.manifest, f"{data_dir}/manifest.json", rebuild_hint(data_dir))
    if not dataset.lm:
        raise ValueError(f"{data_dir} holds data.task={dataset.manifest.get('task')} data, not LM windows")
    keys, rows = [], []
    for sample in dataset.read_samples():
        if split == "train" and max_windows is not None and len(rows) >= max_windows:
            break
        keys.append(sample.key)
        rows.append(np.asarray(sample.tgt, dtype=np.int64))
    if split != "train":
        order = np.argsort(keys)
        keys, rows = [keys[i] for i in order], [rows[i] for i in order]
        if max_windows is not None:
            keys, rows = keys[:max_windows], rows[:max_windows]
    if not rows:
        raise ValueError(f"{data_dir}: the {split} split holds no LM windows")
    return LmWindows(keys, np.stack(rows))
