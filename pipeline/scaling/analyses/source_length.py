"""Loss and BLEU by source length (Bahdanau et al. 2015, fig. 2: an attention-free encoder-decoder falls apart as
sentences grow), for every translation run of a sweep, drawn in the report.

Loss: from each run's `valid_token_losses.npz` (`loss` per sequence and target position, `src_len` per sequence),
token-weighted mean loss of the validation pairs in each source-length bucket, with a 95 % bootstrap CI over the
pairs of the bucket. BLEU: from the run's `summary.json` (`bleu_by_src_len`, written by the final evaluation when
`train.bleu_samples` > 0). LM runs (no source) and runs without the files are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.scaling.records.run_files import RunFiles, run_files_of
from pipeline.scaling.records.run_record import RunRecord

EDGES = (8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)  # upper edges of the buckets, in source tokens
N_BOOT = 400
MIN_PAIRS = 10  # buckets with fewer validation pairs get no point


@dataclass
class Bucketed:
    run: str
    arch: str
    attention: bool
    edges: list[tuple[int, int]]  # (low, high] source tokens of each bucket with a point
    loss: list[float]
    ci: list[tuple[float, float]]
    pairs: list[int]
    bleu: list[dict[str, Any]]  # from summary.json, as written


def bucket_losses(loss: np.ndarray, src_len: np.ndarray, seed: int = 0) -> list[tuple[tuple[int, int], float,
                                                                                    tuple[float, float], int]]:  # fmt: skip
    """[((low, high], mean loss, 95 % CI, pairs)] per source-length bucket with >= MIN_PAIRS pairs."""
    real = np.isfinite(loss)
    sums, counts = np.where(real, loss, 0.0).sum(1), real.sum(1)
    rng = np.random.default_rng(seed)
    out, low = [], 0
    for high in (*EDGES, max(int(src_len.max(initial=0)), EDGES[-1])):
        idx = np.flatnonzero((src_len > low) & (src_len <= high) & (counts > 0))
        if idx.size >= MIN_PAIRS:
            mean = sums[idx].sum() / counts[idx].sum()
            draws = rng.integers(0, idx.size, size=(N_BOOT, idx.size))
            boot = sums[idx][draws].sum(1) / counts[idx][draws].sum(1)
            out.append(
                ((low, high), float(mean), tuple(np.percentile(boot, [2.5, 97.5]).tolist()), int(idx.size))
            )
        low = max(low, high)
    return out


def load_bucketed(files: RunFiles, record: RunRecord) -> Bucketed | None:
    """The run's buckets, or None when it has no per-token losses with source lengths (an LM run, an old file)."""
    tokens = files.token_losses(record.run)
    if tokens is None or tokens.src_len is None:
        return None  # an LM run, or written before src_len was stored
    rows = bucket_losses(tokens.loss, tokens.src_len)
    bleu = files.summary(record.run).get("bleu_by_src_len", [])
    model = record.config.get("model", {})
    # a Transformer always attends to the source; an arm's label (transformer_p128) is not its registry name
    attention = bool(model.get("attention", model.get("arch", record.arch) == "transformer"))
    return Bucketed(record.run, record.arch, attention, [r[0] for r in rows], [r[1] for r in rows],
                    [r[2] for r in rows], [r[3] for r in rows], bleu)  # fmt: skip


def largest_per_arch(records: list[RunRecord]) -> list[RunRecord]:
    """Each architecture's largest-compute run: the one whose length curve the section shows."""
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.arch not in best or r.compute > best[r.arch].compute:
            best[r.arch] = r
    return [best[a] for a in sorted(best)]


def source_lengths(sweep_dir: str | Path | RunFiles, records: list[RunRecord]) -> list[Bucketed]:
    """Each architecture's largest-compute run, bucketed by source length; [] when none has per-pair losses with
    sources. ``sweep_dir``: the sweep's directory or its `RunFiles`."""
    files = run_files_of(sweep_dir)
    return [b for b in (load_bucketed(files, r) for r in largest_per_arch(records)) if b and b.loss]
