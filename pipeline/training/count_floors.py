"""What a run must beat, computed from its prepared data: count floors and the unigram.

- ``unigram_xent``: the add-one train-unigram cross-entropy on the run's validation targets (nats per target,
  ``scaling/analyses/unigram_floor.py``), the "learned nothing" yardstick of every study. The train unigram is
  counted over the whole train split's targets (an LM window's tokens; a pair's target + EOS): the frequencies of
  the part a short run saw are those of the split up to sampling noise, and one count serves every run of a sweep.
- ``count_floors`` (LM runs): interpolated modified Kneser-Ney bigram and trigram (``models/kneser_ney.py``) fitted on
  the train windows the run's token budget covers, each counted as BOS + window (what the model sees), scored on
  every validation window token given BOS and the window's tokens before it (the model's view): overall and by
  position. "The windows the budget covers" = the first ceil(tokens / (context + 1)) train windows in shard order,
  which preparation shuffled (``sources/lm.py``): a random sample of the split of the size the run trained on,
  not the exact windows its loader drew (the loader shuffles again per seed); a budget of one pass or more fits the
  whole split once (repeating windows would only scale the counts). Cached per (data set hash, windows) in
  ``<sweep>/.floors/``, so the runs of a study share one fit per budget.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.manifest import read_manifest
from pipeline.data.stream.lm_windows import lm_windows
from pipeline.data.stream.loader import ShardDataset
from pipeline.data.tokenizer import BOS_ID, EOS_ID
from pipeline.models.kneser_ney import fit_kneser_ney
from pipeline.scaling.analyses.unigram_floor import train_unigram
from pipeline.scaling.records.json_file import write_atomic

CACHE_DIR = ".floors"
ORDERS = {"bigram": 2, "trigram": 3}


def train_target_counts(
    data_dir: str | Path, vocab_size: int, cache_dir: str | Path | None = None
) -> np.ndarray | None:
    """Counts of every train target id (LM: every window token; pairs: target + EOS); None for memory tasks
    (their targets are answers, not text). Cached in ``cache_dir/.floors/`` per data set hash."""
    dataset = ShardDataset(data_dir, "train", batch_tokens=1 << 30)
    if dataset.memory is not None:
        return None
    path = (
        None
        if cache_dir is None
        else Path(cache_dir) / CACHE_DIR / f"{dataset.manifest['dataset_hash'][:16]}-unigram.npy"
    )
    if path is not None and path.is_file():
        return np.load(path)
    counts = np.zeros(vocab_size, dtype=np.int64)
    for sample in dataset.read_samples():
        counts += np.bincount(np.asarray(sample.tgt, dtype=np.int64), minlength=vocab_size)[:vocab_size]
        if not dataset.lm:
            counts[EOS_ID] += 1
    if path is not None:
        write_atomic(path, lambda f: np.save(f, counts), binary=True)  # runs of an array job share it
    return counts


def unigram_xent(train_counts: np.ndarray, valid_counts: np.ndarray | list[int]) -> float:
    """Mean -log p_train(w) over the validation targets (``valid_counts``: how often each id is a target)."""
    q = np.asarray(valid_counts, dtype=float)
    p = train_unigram([np.repeat(np.arange(len(train_counts)), train_counts)], len(train_counts))
    return float(-(q * np.log(p[: len(q)])).sum() / q.sum())


def _cache_path(sweep_dir: Path, manifest: dict, n_windows: int) -> Path:
    return sweep_dir / CACHE_DIR / f"{manifest['dataset_hash'][:16]}-{n_windows}.json"  # per (data, budget)


def count_floors(
    data_dir: str | Path, context: int, tokens: int, cache_dir: str | Path | None = None
) -> dict:
    """KN bigram/trigram floors of an LM run that trained on ``tokens`` target tokens (see the module docstring)."""
    manifest = read_manifest(data_dir)
    total = int(manifest["splits"]["train"]["samples"])
    n = min(total, max(1, math.ceil(tokens / (context + 1))))
    path = None if cache_dir is None else _cache_path(Path(cache_dir), manifest, n)
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    train = lm_windows(data_dir, "train", max_windows=n).tokens
    valid = lm_windows(data_dir, "valid").tokens
    scored = np.concatenate([np.full((len(valid), 1), BOS_ID), valid], axis=1)
    vocab = int(manifest["vocab_size"])
    out: dict[str, Any] = {
        "train_windows": n,
        "train_tokens": int(train.size),
        "whole_split": n == total,
        "fit": "modified Kneser-Ney (Chen & Goodman 1998) on BOS + each train window",
    }
    for name, order in ORDERS.items():
        model = fit_kneser_ney(list(train), vocab, order=order, bos_id=BOS_ID)
        loss = model.token_losses(scored)  # [N, context + 1]: every window token
        out[name] = {
            "loss": float(np.nanmean(loss)),
            "by_position": [float(x) for x in np.nanmean(loss, axis=0)],
        }
    if path is not None:
        write_atomic(path, lambda f: f.write(json.dumps(out) + "\n"))
    return out
