"""Parallel associative scan of a linear recurrence with 2x2 blocks: s_t = A_t s_{t-1} + b_t for all t at once.

The Newton LSTM (`newton_lstm.py`) solves one such recurrence per iteration, forward in time for the states and
backward in time (transposed blocks) for the adjoint. Each hidden unit j carries a 2-vector (h_j, c_j) and a 2x2
block A_t[j]; the blocks are kept as four separate tensors so every combine is elementwise (no tiny matmuls).

Algorithm: odd-even reduction (the recursive form of Blelloch's scan). Pair steps (2k, 2k+1) into one affine map,
scan the half-length sequence recursively, then fill in the even steps: O(T) work (about 2 combines per step), 2 log2 T
dependent levels. Written by hand because PyTorch has no public associative scan
(`torch._higher_order_ops.associative_scan` is private), and minLSTM's log-space scan (`minlstm.py`:
cumsum + logcumsumexp) needs positive scalar coefficients, while Jacobian blocks are signed 2x2 matrices.
"""

from __future__ import annotations

import torch

Blocks = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # a11, a12, a21, a22, each [T, ...]
Pair = tuple[torch.Tensor, torch.Tensor]  # b1, b2 (or s1, s2), each [T, ...]


def _matmul(p: Blocks, q: Blocks) -> Blocks:
    """P @ Q for stacks of 2x2 blocks."""
    return (
        p[0] * q[0] + p[1] * q[2],
        p[0] * q[1] + p[1] * q[3],
        p[2] * q[0] + p[3] * q[2],
        p[2] * q[1] + p[3] * q[3],
    )


def _matvec(p: Blocks, v: Pair) -> Pair:
    return p[0] * v[0] + p[1] * v[1], p[2] * v[0] + p[3] * v[1]


def _scan(a: Blocks, b: Pair) -> Pair:
    T = b[0].size(0)
    if T == 1:
        return b
    n = T // 2  # pairs (0, 1), (2, 3), ..., (2n-2, 2n-1)
    a_even = tuple(x[0 : 2 * n : 2] for x in a)
    a_odd = tuple(x[1 : 2 * n : 2] for x in a)
    b_even = tuple(x[0 : 2 * n : 2] for x in b)
    b_odd = tuple(x[1 : 2 * n : 2] for x in b)
    # s_{2k+1} = A_{2k+1} (A_{2k} s_{2k-1} + b_{2k}) + b_{2k+1}: one affine map per pair
    pair_a = _matmul(a_odd, a_even)  # type: ignore[arg-type]
    ab = _matvec(a_odd, b_even)  # type: ignore[arg-type]
    s_odd = _scan(pair_a, (ab[0] + b_odd[0], ab[1] + b_odd[1]))  # s_1, s_3, ..., s_{2n-1}
    # even steps 2k (k >= 1) from the odd step before them; s_0 = b_0
    a_rest = tuple(x[2::2] for x in a)
    prev = tuple(x[: a_rest[0].size(0)] for x in s_odd)
    fill = _matvec(a_rest, prev)  # type: ignore[arg-type]
    out = []
    for k in range(2):
        s = torch.empty_like(b[k])
        s[0] = b[k][0]
        s[2::2] = fill[k] + b[k][2::2]
        s[1::2] = s_odd[k]
        out.append(s)
    return out[0], out[1]


def linear_scan_2x2(a: Blocks, b: Pair, reverse: bool = False) -> Pair:
    """Solve s_t = A_t s_{t-1} + b_t (t = 0..T-1, s_{-1} = 0) along dim 0; fold an initial state into b_0.

    reverse=True solves s_t = A_t s_{t+1} + b_t backward in time (s_T = 0), as the adjoint needs.
    Not differentiable by design: callers use it inside a hand-written backward (`torch.autograd.Function`).
    """
    if reverse:
        s = _scan(tuple(x.flip(0) for x in a), tuple(x.flip(0) for x in b))  # type: ignore[arg-type]
        return s[0].flip(0), s[1].flip(0)
    return _scan(a, b)


def linear_scan_2x2_sequential(a: Blocks, b: Pair, reverse: bool = False) -> Pair:
    """The same recurrence one step at a time: the reference for tests."""
    T = b[0].size(0)
    steps = range(T - 1, -1, -1) if reverse else range(T)
    s = (torch.zeros_like(b[0][0]), torch.zeros_like(b[1][0]))
    out = (torch.empty_like(b[0]), torch.empty_like(b[1]))
    for t in steps:
        at = tuple(x[t] for x in a)
        v = _matvec(at, s)  # type: ignore[arg-type]
        s = (v[0] + b[0][t], v[1] + b[1][t])
        out[0][t], out[1][t] = s
    return out
