"""The GEMM rate at the shapes a model's training step multiplies: the limit a small model can actually reach.

The roofline's limit is the best rate of large square `torch.mm`s; a small model never multiplies such matrices.
nn.LSTM multiplies each timestep's state [rows, d] by its [d, 4d] recurrent weights (one dependent GEMM per
timestep and layer: `step`), and every model's token-parallel layers multiply [tokens, d] by [d, 4d] (the input
projections of all timesteps at once, a Transformer's feed-forward: `tokens`). Each rate is the best of 3 windows of
`torch.addmm` (fp32, the run's threads; process CPU time on a CPU, the wall clock on a GPU). Where a model's
achieved FLOP/s is near the rate at its own shapes, its step is bound by how fast this core multiplies matrices that
thin (and by each op's fixed cost): compiling keeps the same GEMMs, so it cannot remove that bound; only larger
GEMMs (more rows a batch, wider models) can.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import Clock, synchronize


def addmm_rate(device: torch.device, m: int, k: int, n: int, min_s: float = 0.05) -> float:
    """Best FLOP/s of `addmm(bias[n], a[m, k], b[k, n])` over 3 windows of about `min_s` each."""
    a, b, bias = (torch.randn(m, k, device=device), torch.randn(k, n, device=device),
                  torch.randn(n, device=device))  # fmt: skip
    flops = 2.0 * m * k * n
    torch.addmm(bias, a, b)
    start = Clock.now()
    torch.addmm(bias, a, b)
    one = max((Clock.now() - start).cpu, 1e-7)
    reps = max(1, int(min_s / one))
    best = 0.0
    for _ in range(3):
        synchronize(device)
        start = Clock.now()
        for _ in range(reps):
            torch.addmm(bias, a, b)
        synchronize(device)
        took = Clock.now() - start
        seconds = took.cpu if device.type == "cpu" else took.wall
        best = max(best, flops * reps / max(seconds, 1e-9))
    return best


def shape_limits(device: torch.device, rows: int, tokens: int, d: int, limit: float) -> dict[str, Any]:
    """The `step` ([rows, d] x [d, 4d]) and `tokens` ([tokens, d] x [d, 4d]) GEMM rates, also as shares of the
    square `limit`."""
    out: dict[str, Any] = {}
    for name, m in (("step", rows), ("tokens", tokens)):
        rate = addmm_rate(device, m, d, 4 * d)
        out[name] = {"shape": [m, d, 4 * d], "flops_per_s": rate, "of_limit": rate / limit}
    return out


def op_cost_s(device: torch.device, calls: int = 20000) -> float:
    """Seconds of one call of a trivial op (`torch.add` of one-element tensors into a preallocated output), best
    of 3 windows: the fixed cost every launched op pays (Python binding, dispatcher, kernel selection), which a
    small model's step pays once per op it launches (`ops_per_step` of a roofline row)."""
    a, b, out = (torch.ones(1, device=device) for _ in range(3))
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = Clock.now()
        for _ in range(calls):
            torch.add(a, b, out=out)
        synchronize(device)
        took = Clock.now() - start
        best = min(best, (took.cpu if device.type == "cpu" else took.wall) / calls)
    return best


def batch_shape(batches: list[dict[str, Any]]) -> tuple[int, int]:
    """(median rows, median target tokens a batch) of `batches`: the sizes a step's GEMMs see."""
    rows = sorted(int(b["tgt_in"].shape[0]) for b in batches)
    tokens = sorted(int(b["tgt_in"].numel()) for b in batches)
    return rows[len(rows) // 2], tokens[len(tokens) // 2]
