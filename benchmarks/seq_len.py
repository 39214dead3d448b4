"""Suite 2: training tokens/s versus sequence length at a fixed number of tokens per batch, LSTM vs Transformer.

At a fixed token budget a longer sequence means fewer rows: the Transformer keeps all positions in one matmul
(its cost per token grows only through attention, ~L), while an LSTM must take L dependent steps, each a
[rows x d] matmul that gets thinner as L grows. That is the sequential bottleneck this measures.

Batches are synthetic and full length (no padding, source length = target length = L) so that only L changes.
The vocabulary is kept small (1000) because the output projection costs the same per token at every length and
would only dilute the effect. Steps are timed with `common.PlainLoop` (the model's cost, without framework), the
two architectures interleaved at each length, alternating which goes first.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import BenchSettings, PlainLoop, spread, synthetic_batches
from pipeline.config import OptimConfig
from pipeline.models.registry import build_model

VOCAB = 1000
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"d_model": 32, "n_layers": 2, "n_heads": 2, "tokens": 256, "lengths": [16, 32, 64],
              "warmup": 1, "steps": 2, "repeats": 1},
    "cpu": {"d_model": 128, "n_layers": 2, "n_heads": 4, "tokens": 2048, "lengths": [32, 64, 128, 256, 512, 1024],
            "warmup": 1, "steps": 3, "repeats": 2},
    "cuda": {"d_model": 512, "n_layers": 4, "n_heads": 8, "tokens": 16384,
             "lengths": [32, 64, 128, 256, 512, 1024], "warmup": 3, "steps": 10, "repeats": 3},
}  # fmt: skip


def profile_for(settings: BenchSettings) -> dict[str, Any]:
    return PROFILES["quick" if settings.quick else settings.device]


def models(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    common = {"vocab_size": VOCAB, "d_model": p["d_model"], "n_layers": p["n_layers"], "dropout": 0.0}
    return {
        "lstm": {"arch": "lstm", "attention": True, **common},
        "transformer": {
            "arch": "transformer",
            "n_heads": p["n_heads"],
            "max_len": max(p["lengths"]),
            **common,
        },
    }


def run(settings: BenchSettings, log: Any = print) -> dict[str, Any]:
    p = profile_for(settings)
    warmup, steps = p["warmup"], p["steps"]
    optim = OptimConfig()
    loops = {}
    for arch, cfg in models(p).items():
        torch.manual_seed(0)
        loops[arch] = PlainLoop(build_model(**cfg), optim, 10**6, settings.torch_device, settings.precision)
    rows = []
    for length in p["lengths"]:
        batches = synthetic_batches(length, p["tokens"], VOCAB, n=warmup + steps, seed=length)
        samples: dict[str, list[tuple[float, float]]] = {arch: [] for arch in loops}
        for r in range(p["repeats"]):
            for arch in list(loops)[:: 1 if r % 2 == 0 else -1]:
                t = loops[arch].run(batches, warmup, steps)
                samples[arch].append(
                    (t.tokens / t.seconds(settings.clock), t.flops / t.seconds(settings.clock))
                )
        for arch, values in samples.items():
            row = {
                "arch": arch,
                "seq_len": length,
                "rows": batches[0]["src"].shape[0],
                "tokens_per_s": spread([v[0] for v in values]),
                "flops_per_s": spread([v[1] for v in values]),
            }
            rows.append(row)
            log(
                f"seq_len {length:>5} {arch:>12}: {row['tokens_per_s']['median']:.0f} tok/s, rows={row['rows']}"
            )
    for row in rows:  # relative to the shortest length of the same architecture
        base = next(r for r in rows if r["arch"] == row["arch"] and r["seq_len"] == p["lengths"][0])
        row["relative_to_shortest"] = row["tokens_per_s"]["median"] / base["tokens_per_s"]["median"]
    return {
        "tokens_per_batch": p["tokens"],
        "vocab_size": VOCAB,
        "models": models(p),
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": p["repeats"],
        "clock": settings.clock,
        "rows": rows,
    }
