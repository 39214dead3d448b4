"""The chunked logcumsumexp (pipeline/models/log_scan.py) against `torch.logcumsumexp`: values and gradients, on
the fast path (T a multiple of the chunk or not, extra dims) and on both fallbacks (an underflowing prefix, -inf)."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import log_scan
from pipeline.models.log_scan import logcumsumexp_dim1


def _check(x: torch.Tensor) -> None:
    x = x.double().requires_grad_()
    grad = torch.randn_like(x)
    got, want = logcumsumexp_dim1(x), torch.logcumsumexp(x, 1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    (g_got,) = torch.autograd.grad(got, x, grad)
    (g_want,) = torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 64, 5), (2, 50, 4), (2, 7, 3), (2, 40, 2, 3), (1, 17)])
def test_chunked_scan_matches_the_exact_op(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _check(torch.randn(*shape) * 4)


def test_the_fast_path_runs_where_it_can_and_the_exact_op_where_a_prefix_underflows(monkeypatch) -> None:
    calls: list[int] = []
    exact = torch.logcumsumexp
    monkeypatch.setattr(
        log_scan.torch, "logcumsumexp", lambda x, dim: calls.append(x.size(1)) or exact(x, dim)
    )
    torch.manual_seed(0)
    logcumsumexp_dim1(torch.randn(2, 64, 3))
    assert calls == [64 // log_scan.CHUNK]  # only the chunk totals went through the exact op
    calls.clear()
    steep = torch.randn(2, 64, 3)
    steep[:, 1::16] += 200.0  # a chunk's max 200 nats above the term before it: that prefix underflows
    _check(steep)
    calls.clear()
    logcumsumexp_dim1(steep)
    assert calls == [64]  # the whole scan fell back
    calls.clear()
    with_inf = torch.randn(2, 64, 3)
    with_inf[0, 5, 1] = float("-inf")
    torch.testing.assert_close(logcumsumexp_dim1(with_inf), exact(with_inf, 1))
    assert calls == [64]
