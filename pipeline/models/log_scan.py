"""`logcumsumexp` along dim 1 by chunks: a max-shifted `cumsum` of `exp` inside each chunk, the exact op across them.

Why: minLSTM's log-space scan (`minlstm.py`) spent 40% of a training step in `torch.logcumsumexp` on one CPU
thread (torch.profiler, recall-study size: B=64, T=256, d=128; its backward runs two more of them). ATen's CPU
kernel is a serial scan with a log and an exp per element (~58 ms forward for [64, 256, 128]), while `exp` and
`cumsum` over the same tensor take ~2-3 ms each. Measured (process CPU time, 1 thread, shared machine at load
4.5-6): forward 58 -> 23 ms, forward+backward 261 -> 72 ms; a minLSTM training step at that size 0.97-1.02 ->
0.61-0.66 s (nn.LSTM's: 0.47-0.51 s), interleaved in one process. Autograd's backward of the chunked form is
elementwise ops plus a reversed cumsum.

Exactness: inside a chunk every term is shifted by the chunk's max, so each shifted term is <= 1 and a prefix sum
loses nothing unless the whole prefix underflows (terms more than ~70 nats below the chunk's max before the max
arrives). Then, or if the input is not finite, the exact `torch.logcumsumexp` runs instead: the result is always
that of the exact op up to float rounding (checked against it in tests/unit/test_log_scan.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 16
# a prefix sum of shifted terms below this falls back to the exact op (fp32 normals end at 1.2e-38)
TINY = 1e-30


def logcumsumexp_dim1(x: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """log(cumsum(exp(x), dim=1)) for x [B, T, ...] (floating point), as `torch.logcumsumexp(x, 1)`."""
    if torch.compiler.is_compiling():
        return torch.logcumsumexp(x, 1)  # train.compile: no data-dependent branch in the graph
    if x.dim() < 2 or x.size(1) <= chunk or not bool(torch.isfinite(x).all()):
        return torch.logcumsumexp(x, 1)
    B, T = x.size(0), x.size(1)
    rest = x.shape[2:]
    n = -(-T // chunk)
    padded = F.pad(x, (0, 0) * len(rest) + (0, n * chunk - T), value=float("-inf")) if n * chunk > T else x
    xc = padded.reshape(B, n, chunk, *rest)
    shift = xc.amax(2, keepdim=True).detach()  # any shift is exact; the max keeps every term <= 1
    sums = torch.cumsum(torch.exp(xc - shift), 2)
    if bool((sums < TINY).any()):
        return torch.logcumsumexp(x, 1)
    inner = torch.log(sums) + shift  # logcumsumexp inside each chunk
    carry = torch.logcumsumexp(inner[:, :, -1], 1)  # totals of chunks 0..k: n steps of the exact op
    before = F.pad(carry[:, :-1], (0, 0) * len(rest) + (1, 0), value=float("-inf"))  # chunks before k
    out = torch.logaddexp(inner, before.unsqueeze(2))
    return out.reshape(B, n * chunk, *rest)[:, :T]
