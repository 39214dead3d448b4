"""Truncation evaluation: equal to a naive loop that runs the model on exactly K previous tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.registry import build_model
from pipeline.training.truncation_eval import truncation_losses

V, N, W = 13, 3, 15  # vocab, windows, window length (14 targets)
CONTEXTS = (1, 3, 5, 9, 20)  # 20 > every prefix: the full-context loss
ARCHS = {
    "lstm": {},
    "residual_lstm": dict(residual_from=1),
    "minlstm": {},
    "transformer": dict(n_heads=2, d_ff=16, max_len=W),
    "transformer_rope": dict(n_heads=2, d_ff=16, max_len=W, positions="rope"),
}


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name = arch.removesuffix("_rope")
    return build_model(name, vocab_size=V, d_model=8, n_layers=2, task="lm", **ARCHS[arch]).eval()


def _naive(model: torch.nn.Module, windows: torch.Tensor, k: int, bos_id: int | None) -> np.ndarray:
    """loss[n, t]: one forward per (window, target) on exactly its last k real tokens (BOS first if any)."""
    out = np.full((windows.size(0), windows.size(1) - 1), np.nan)
    lead = 1 if bos_id is not None else 0
    for n in range(windows.size(0)):
        row = windows[n].tolist()
        for t in range(windows.size(1) - 1):
            real = row[lead : t + 1]  # the real tokens before target t
            ctx = ([bos_id] if lead else []) + real[max(0, len(real) - k) :]
            logits = model.lm_forward(torch.tensor([ctx]))[0, -1]
            out[n, t] = F.cross_entropy(logits[None], torch.tensor([row[t + 1]])).item()
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bos_id", [None, 1])
def test_equals_naive_per_context_loop(arch: str, bos_id: int | None) -> None:
    model = _model(arch)
    windows = torch.randint(2, V, (N, W), generator=torch.Generator().manual_seed(1))
    if bos_id is not None:
        windows[:, 0] = bos_id
    with torch.no_grad():
        got = truncation_losses(model, windows, CONTEXTS, bos_id=bos_id, max_batch_tokens=40)
        want = np.stack([_naive(model, windows, k, bos_id) for k in CONTEXTS])
    np.testing.assert_allclose(got.loss, want, rtol=1e-5, atol=1e-5)
    assert got.loss.shape == (len(CONTEXTS), N, W - 1)
    # the context matters: cut to 1 token, late targets score differently from full context
    assert np.abs(got.loss[0, :, 6:] - got.loss[-1, :, 6:]).max() > 1e-3
    lead = 0 if bos_id is None else 1
    assert got.first_cut == tuple(min(k + lead, W - 1) for k in CONTEXTS)
    with pytest.raises(ValueError, match="largest context 20 needs longer windows"):
        got.curve()
    trunc = truncation_losses(model, windows, CONTEXTS[:-1], bos_id=bos_id)  # K_max = 9
    late = 8 + lead
    assert trunc.late_start == late
    assert trunc.curve() == pytest.approx(want[:-1, :, late:].mean(axis=(1, 2)), abs=1e-5)
    assert trunc.delta()[-1] == 0
    assert trunc.delta()[0] == pytest.approx(want[0, :, late:].mean() - want[3, :, late:].mean(), abs=1e-5)


def test_min_position_skips_early_targets_and_errors() -> None:
    model = _model("transformer")
    windows = torch.randint(2, V, (N, W), generator=torch.Generator().manual_seed(2))
    full = truncation_losses(model, windows, (2, 4))
    part = truncation_losses(model, windows, (2, 4), min_position=6)
    assert np.isnan(part.loss[:, :, :6]).all()
    np.testing.assert_allclose(part.loss[:, :, 6:], full.loss[:, :, 6:], rtol=1e-6)
    with pytest.raises(ValueError, match="bos_id=1 given but not every window starts with it"):
        truncation_losses(model, windows, (2,), bos_id=1)
    with pytest.raises(ValueError, match="contexts must be positive ints"):
        truncation_losses(model, windows, (0, 2))
    assert math.isfinite(float(full.curve(first_position=0)[0]))


@pytest.mark.parametrize("min_position", [0, 5])
def test_stride_scores_the_same_targets_at_every_context_and_nothing_else(min_position: int) -> None:
    model = _model("lstm")
    windows = torch.randint(2, V, (N, W), generator=torch.Generator().manual_seed(3))
    windows[:, 0] = 1
    every = truncation_losses(model, windows, (1, 3, 6), bos_id=1, min_position=min_position)
    third = truncation_losses(model, windows, (1, 3, 6), bos_id=1, min_position=min_position, stride=3)
    grid = np.arange(min_position, W - 1, 3)
    np.testing.assert_allclose(third.loss[:, :, grid], every.loss[:, :, grid], rtol=1e-6)
    off = np.setdiff1d(np.arange(W - 1), grid)
    assert np.isnan(third.loss[:, :, off]).all() and np.isfinite(third.loss[:, :, grid]).all()
    with pytest.raises(ValueError, match="stride must be >= 1"):
        truncation_losses(model, windows, (2,), stride=0)
