"""Suite 3: the data loader's tokens/s on its own versus what the trainer consumes (goal: >= 10x headroom).

The loader is measured in this process (`num_workers=0`), i.e. one core's worth of decoding, bucketing and
collating; each of `data.num_workers` worker processes adds about that much again. Its start-up (opening shards,
filling the first 2048-sample bucket) is reported apart from the steady rate, since the training stream is endless
and pays it once. The consumption side is the fastest trainer tokens/s of suite 1 at the same `batch_tokens`.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import BenchSettings, spread
from pipeline.data.stream.loader import build_loader

GOAL = 10.0


def loader_rate(
    data_dir: str, batch_tokens: int, max_len: int, min_batches: int, min_seconds: float
) -> dict[str, Any]:
    """Start-up seconds, then target tokens/s (and batches/s) over at least `min_batches` and `min_seconds`."""
    t0 = time.perf_counter()
    stream = iter(build_loader(data_dir, "train", batch_tokens=batch_tokens, max_len=max_len, seed=1234,
                               infinite=True, bucket_size=2048))  # fmt: skip
    next(stream)
    startup = time.perf_counter() - t0
    tokens = batches = 0
    start = time.perf_counter()
    while batches < min_batches or time.perf_counter() - start < min_seconds:
        tokens += int(next(stream)["n_tokens"])
        batches += 1
    seconds = time.perf_counter() - start
    return {"startup_s": startup, "tokens_per_s": tokens / seconds, "batches_per_s": batches / seconds,
            "batches": batches}  # fmt: skip


def run(settings: BenchSettings, data: dict[str, Any], throughput: dict[str, Any] | None,
        log: Any = print) -> dict[str, Any]:  # fmt: skip
    """One row per `batch_tokens` used by suite 1 (or 3072, the demo's, without it)."""
    trained: dict[int, float] = {}
    for row in (throughput or {}).get("rows", []):
        rate = row["trainer_tokens_per_s"]["median"]
        trained[row["batch_tokens"]] = max(trained.get(row["batch_tokens"], 0.0), rate)
    rows = []
    for batch_tokens in sorted(trained) or [3072]:
        reps = [
            loader_rate(
                settings.data_dir,
                batch_tokens,
                data["max_len"],
                *((10, 0.0) if settings.quick else (50, 3.0)),
            )
            for _ in range(1 if settings.quick else 3)
        ]
        rate = spread([r["tokens_per_s"] for r in reps])
        consumed = trained.get(batch_tokens)
        row = {
            "batch_tokens": batch_tokens,
            "num_workers": 0,
            "loader_tokens_per_s": rate,
            "startup_s": spread([r["startup_s"] for r in reps]),
            "batches_per_s": spread([r["batches_per_s"] for r in reps]),
            "trainer_tokens_per_s": consumed,
            "headroom": None if consumed is None else rate["median"] / consumed,
            "goal": GOAL,
        }
        rows.append(row)
        headroom = "-" if consumed is None else f"{row['headroom']:.0f}x the fastest trainer"
        log(f"loader batch_tokens={batch_tokens}: {rate['median']:.0f} tok/s ({headroom})")
    return {"rows": rows}
