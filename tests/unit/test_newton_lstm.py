"""The Newton (quasi-DEER) LSTM is the exact LSTM: outputs and gradients match nn.LSTM on the same weights.

Stated tolerances (max abs error of outputs/final states; max error of each gradient relative to its largest
entry): float64 with newton_tol=1e-12 -> 1e-8; float32 with the default newton_tol=1e-5 -> 1e-4 (outputs) and
1e-3 (gradients). A solve that does not converge falls back to the sequential loop (counted) or raises.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from pipeline.models.newton_lstm import (
    NewtonLSTM,
    NewtonNotConverged,
    NewtonSettings,
    measured_iters,
    newton_step_stats,
)
from pipeline.models.parallel_scan import linear_scan_2x2, linear_scan_2x2_sequential
from pipeline.models.registry import build_model

TOL = {torch.float64: (1e-12, 1e-8, 1e-8), torch.float32: (1e-5, 1e-4, 1e-3)}  # newton_tol, out, grad


def pair(d_in: int, d: int, layers: int, dtype: torch.dtype, **settings) -> tuple[nn.LSTM, NewtonLSTM]:
    torch.manual_seed(0)
    ref = nn.LSTM(d_in, d, layers, batch_first=True).to(dtype)
    new = NewtonLSTM(d_in, d, layers, batch_first=True, settings=NewtonSettings(**settings)).to(dtype)
    new.load_state_dict(ref.state_dict())  # same parameter names: one state dict serves both solvers
    return ref, new


def run(lstm: nn.LSTM, x: torch.Tensor, state, lengths: torch.Tensor | None, weight: torch.Tensor):
    """Outputs (packed data if lengths), final (h, c), and gradients of a loss touching all three."""
    x = x.detach().requires_grad_(True)
    inp = x if lengths is None else pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h, c) = lstm(inp, state)
    y = out if lengths is None else out.data
    loss = (y * weight[: y.numel()].view_as(y)).sum() + (h * 0.3).sum() + (c * 0.7).sum()
    grads = torch.autograd.grad(loss, [x, *lstm.parameters()])
    return [y, h, c], grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1, 7, 64, 512])
@pytest.mark.parametrize("padded", [False, True])
def test_outputs_and_gradients_match_nn_lstm(dtype: torch.dtype, T: int, padded: bool) -> None:
    newton_tol, out_tol, grad_tol = TOL[dtype]
    B, d_in, d, layers = 3, 5, 8, 2
    ref, new = pair(d_in, d, layers, dtype, tol=newton_tol, max_iters=600)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, d_in, generator=g, dtype=dtype)
    state = tuple(0.5 * torch.randn(layers, B, d, generator=g, dtype=dtype) for _ in range(2))
    lengths = torch.tensor([T, max(1, T // 2), max(1, T - 3)]) if padded else None
    weight = torch.randn(B * T * d, generator=g, dtype=dtype)
    (outs_ref, grads_ref), (outs_new, grads_new) = (run(m, x, state, lengths, weight) for m in (ref, new))
    for a, b in zip(outs_ref, outs_new, strict=True):
        assert a.shape == b.shape and b.dtype == dtype
        assert (a - b).abs().max() <= out_tol
    for a, b in zip(grads_ref, grads_new, strict=True):
        assert (a - b).abs().max() <= grad_tol * a.abs().max()
    stats = newton_step_stats(new)
    assert stats["newton/fallbacks"] == 0  # solved by the scans, not by the sequential fallback
    assert 1 <= stats["newton/iters_max"] <= T + 1 and 1 <= stats["newton/bwd_iters"] <= T + 1
    assert stats["newton/residual"] <= newton_tol and stats["newton/bwd_residual"] <= newton_tol


def test_causality_bounds_the_iterations_by_T() -> None:
    """After k scans the first k steps are exact, so T scans solve even weights far from the easy regime."""
    ref, new = pair(4, 6, 1, torch.float64, tol=1e-13, max_iters=9)
    with torch.no_grad():
        for p in (*ref.parameters(), *new.parameters()):
            p.mul_(6.0)  # saturated gates, strong recurrent coupling
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    assert torch.allclose(ref(x)[0], new(x)[0], atol=1e-10, rtol=0)
    assert newton_step_stats(new)["newton/fallbacks"] == 0


def test_non_convergence_falls_back_to_the_exact_loop_and_counts_it() -> None:
    ref, new = pair(5, 8, 2, torch.float32, tol=1e-7, max_iters=1)
    x = torch.randn(3, 64, 5)
    weight = torch.randn(3 * 64 * 8)
    (outs_ref, grads_ref), (outs_new, grads_new) = (run(m, x, None, None, weight) for m in (ref, new))
    for a, b in zip([*outs_ref, *grads_ref], [*outs_new, *grads_new], strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    stats = newton_step_stats(new)
    assert stats["newton/fallbacks"] == 4  # 2 layers x (forward + backward)
    assert stats["newton/residual"] > 1e-7 and stats["newton/iters_max"] == 1


def test_non_convergence_raises_when_asked() -> None:
    _, new = pair(5, 8, 1, torch.float32, tol=1e-7, max_iters=1, on_fail="error")
    with pytest.raises(NewtonNotConverged, match="newton_max_iters=1"):
        new(torch.randn(2, 64, 5))


def test_scan_matches_its_sequential_reference() -> None:
    g = torch.Generator().manual_seed(0)
    for T in (1, 2, 3, 8, 33):
        a = tuple(0.6 * torch.randn(T, 4, generator=g, dtype=torch.float64) for _ in range(4))
        b = tuple(torch.randn(T, 4, generator=g, dtype=torch.float64) for _ in range(2))
        for reverse in (False, True):
            got, want = linear_scan_2x2(a, b, reverse), linear_scan_2x2_sequential(a, b, reverse)
            assert all(torch.allclose(u, v, atol=1e-12, rtol=0) for u, v in zip(got, want, strict=True))


@pytest.mark.parametrize(("arch", "extra"), [("lstm", {}), ("residual_lstm", {"residual_from": 1})])
def test_models_give_the_same_logits_and_gradients_with_either_solver(arch: str, extra: dict) -> None:
    torch.manual_seed(0)
    keys = {"vocab_size": 40, "d_model": 12, "n_layers": 2, **extra}
    seq, newton = build_model(arch, **keys), build_model(arch, recurrence="newton", **keys)
    newton.load_state_dict(seq.state_dict())
    src = torch.randint(1, 40, (4, 11))
    mask = torch.arange(11)[None, :] < torch.tensor([11, 6, 2, 9])[:, None]  # variable source lengths
    src = src.masked_fill(~mask, 0)
    tgt = torch.randint(1, 40, (4, 7))
    la, lb = seq(src, mask, tgt), newton(src, mask, tgt)
    assert torch.allclose(la, lb, atol=1e-5, rtol=0)
    la.square().mean().backward()
    lb.square().mean().backward()
    for p, q in zip(seq.parameters(), newton.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6 + 1e-4 * p.grad.abs().max().item(), rtol=0)
    assert seq.step_stats() == {}
    stats = newton.step_stats()
    assert stats["newton/iters"] >= 1 and stats["newton/bwd_iters"] >= 1 and stats["newton/fallbacks"] == 0


def test_config_keys_are_checked() -> None:
    base = {"vocab_size": 40, "d_model": 12, "n_layers": 1}
    for arch in ("minlstm", "lstm_no_cell_residual"):  # their stacks are not nn.LSTMs
        with pytest.raises(ValueError, match="recurrence='newton'"):
            build_model(arch, recurrence="newton", **base)
    for key, value in [("recurrence", "jacobi"), ("newton_max_iters", 0), ("newton_tol", -1.0),
                       ("newton_on_fail", "ignore")]:  # fmt: skip
        with pytest.raises(ValueError, match=key):
            build_model("lstm", **{"recurrence": "newton", key: value}, **base)


def test_flops_per_token_counts_the_iterations() -> None:
    """Half a scan each way costs exactly the sequential LSTM's 3 x 8 d^2 recurrent FLOPs; each scan adds 8 d^2."""
    keys = {"vocab_size": 40, "d_model": 16, "n_layers": 2}
    seq, newton = build_model("lstm", **keys), build_model("lstm", recurrence="newton", **keys)
    assert newton.flops_per_token(10, 8, newton_iters=(0.5, 0.5)) == pytest.approx(seq.flops_per_token(10, 8))
    extra = newton.flops_per_token(10, 8, newton_iters=(1.5, 0.5)) - seq.flops_per_token(10, 8)
    assert extra == pytest.approx(8.0 * 16 * 16 * 2 * (10 / 8 + 1))  # 2 layers, encoder + decoder tokens
    # without measurements: the bound min(cap, length); after a training step the measured means
    capped = build_model("lstm", recurrence="newton", newton_max_iters=5, **keys)
    assert capped.flops_per_token(10, 8) == capped.flops_per_token(10, 8, newton_iters=(5.0, 5.0))
    bound = newton.flops_per_token(10, 8)
    assert newton.flops_per_token(10, 8, (8.0, 8.0)) < bound < newton.flops_per_token(10, 8, (10.0, 10.0))
    src, tgt = torch.randint(1, 40, (2, 10)), torch.randint(1, 40, (2, 8))
    newton(src, src > 0, tgt).sum().backward()
    assert newton.flops_per_token(10, 8) == newton.flops_per_token(10, 8, measured_iters(newton)) < bound


def test_runs_under_bf16_autocast_in_float32() -> None:
    ref, new = pair(5, 8, 1, torch.float32)
    x = torch.randn(2, 16, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = new(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref(x)[0]).abs().max() < 0.05  # only the input projection ran in bf16


def test_benchmark_quick_run_writes_its_measurements(tmp_path) -> None:
    import json

    from benchmarks.bench_newton import main

    out = tmp_path / "newton.json"
    main(["--lengths", "4", "16", "--batch", "2", "--d-model", "8", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [(r["weights"], r["seq_len"]) for r in rows] == [
        ("init", 4), ("init", 16), ("forget_bias_3", 4), ("forget_bias_3", 16)
    ]  # fmt: skip
    for r in rows:
        assert 1 <= r["newton_iters"]["forward"] <= r["seq_len"] and r["newton_fallbacks"] == 0
        assert r["max_abs_diff_vs_nn_lstm"] < 1e-4 and r["train_matmul_flops_per_token"]["ratio"] > 1
        assert r["sequential_depth"]["sequential"] == 2 * r["seq_len"] and set(r["ms"]) == {
            "nn_lstm", "sequential_loop", "newton"
        }  # fmt: skip
