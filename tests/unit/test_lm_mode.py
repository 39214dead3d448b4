"""Decoder-only language models (`task="lm"`) for every architecture: causality, sizes, FLOPs, training, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pipeline.models.configs import model_config
from pipeline.models.decode import greedy_decode
from pipeline.models.registry import build_model

V, D, L, T = 30, 16, 2, 12
CASES = {
    "lstm": ("lstm", {}),
    "lstm_newton": ("lstm", dict(recurrence="newton")),
    "residual_lstm": ("residual_lstm", dict(residual_from=1)),
    "lstm_no_cell_residual": ("lstm_no_cell_residual", {}),
    "minlstm": ("minlstm", {}),
    "transformer": ("transformer", dict(n_heads=2, d_ff=24, max_len=T)),
    "transformer_rope": ("transformer", dict(n_heads=2, d_ff=24, max_len=T, positions="rope")),
}
ARCHS = ["lstm", "residual_lstm", "lstm_no_cell_residual", "minlstm", "transformer"]


def build(case: str, seed: int = 0, task: str = "lm", **overrides: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    arch, kw = CASES[case]
    return build_model(arch, vocab_size=V, d_model=D, n_layers=L, task=task, **{**kw, **overrides})


def tokens(seed: int = 0, rows: int = 3) -> torch.Tensor:
    return torch.randint(3, V, (rows, T), generator=torch.Generator().manual_seed(seed))


def empty_source(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(rows, 0, dtype=torch.long), torch.zeros(rows, 0, dtype=torch.bool)


@pytest.mark.parametrize("case", CASES)
def test_logit_t_depends_only_on_tokens_up_to_t(case: str) -> None:
    model = build(case).eval()
    x = tokens()
    ref = model.lm_forward(x)
    assert ref.shape == (3, T, V)
    for t0 in (0, 5, T - 1):
        changed = x.clone()
        changed[:, t0] = (changed[:, t0] + 7) % V
        out = model.lm_forward(changed)
        torch.testing.assert_close(out[:, :t0], ref[:, :t0], atol=0, rtol=0)
        assert (out[:, t0] - ref[:, t0]).abs().amax() > 1e-4  # position t0 does read token t0


@pytest.mark.parametrize("case", CASES)
def test_forward_with_an_empty_source_is_lm_forward(case: str) -> None:
    model = build(case).eval()
    x = tokens()
    torch.testing.assert_close(model(*empty_source(3), x), model.lm_forward(x))
    with pytest.raises(ValueError, match="task='lm' takes an empty source"):
        model(x, torch.ones_like(x, dtype=torch.bool), x)


@pytest.mark.parametrize("case", CASES)
def test_incremental_decoding_of_a_language_model(case: str) -> None:
    """decode_step with an empty source reproduces lm_forward position by position, so greedy sampling works."""
    model = build(case).eval()
    x = tokens()
    with torch.no_grad():
        full = model.lm_forward(x)
        state = model.start_decoding(*empty_source(3))
        steps = []
        for t in range(T):
            logits, state = model.decode_step(x[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert greedy_decode(model, *empty_source(3), 1, -1, T).shape == (3, T)


def lstm_layer(d_in: int, gates: int = 4) -> int:
    return gates * d_in * D + gates * D * D + 2 * gates * D  # W_ih, W_hh, two biases


def transformer_layer(d_ff: int) -> int:
    attn = 4 * D * D + 4 * D  # q, kv (2d), o: weights and biases
    return attn + 2 * D * d_ff + d_ff + D + 2 * 2 * D  # + FFN + the two LayerNorms of a GPT block


EXPECTED_NON_EMBEDDING = {
    "lstm": L * lstm_layer(D),
    "lstm_newton": L * lstm_layer(D),
    "residual_lstm": L * lstm_layer(D),
    "lstm_no_cell_residual": L * lstm_layer(D, gates=3),
    "minlstm": L * (3 * D * D + 3 * D),
    "transformer": L * transformer_layer(24) + 2 * D,  # + final LayerNorm
    "transformer_rope": L * transformer_layer(24) + 2 * D,  # rotary positions: no parameters
}


@pytest.mark.parametrize("case", CASES)
def test_param_count_is_the_decoder_alone(case: str) -> None:
    model = build(case)
    n = EXPECTED_NON_EMBEDDING[case]
    assert model.num_params(non_embedding=True) == n
    positions = T * D if case == "transformer" else 0
    assert model.num_params() == n + V * D + positions  # one tied token table (no source table) + positions
    untied = build(case, tie_embeddings=False)
    assert untied.num_params(non_embedding=True) == n and untied.num_params() == n + 2 * V * D + positions
    seq2seq = build(case, task="seq2seq", **({} if case.startswith("transformer") else {"attention": False}))
    assert seq2seq.num_params() > model.num_params()  # the encoder and source embedding are really gone


@pytest.mark.parametrize("case", ["transformer", "lstm_no_cell_residual", "minlstm"])
def test_flops_per_token_of_an_lm_match_the_flop_counter(case: str) -> None:
    """Every matmul of these runs as a plain aten op, so the counter sees all of them (docs/flops.md)."""
    model = build(case)
    x = tokens(rows=4)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.lm_forward(x).sum().backward()
    assert counter.get_total_flops() == pytest.approx(model.flops_per_token(0, T) * 4 * T, rel=1e-12)


def test_flops_per_token_of_recurrent_lms_are_the_decoder_stack_and_output() -> None:
    """nn.LSTM is invisible to FlopCounterMode, so these are the docs/flops.md formulas at src_len=0."""
    out = 2 * D * V
    expect = {
        "lstm": 3 * (L * 8 * (2 * D) * D + out),
        "residual_lstm": 3 * (L * 8 * (2 * D) * D + out),
        "lstm_no_cell_residual": 3 * (L * 6 * (2 * D) * D + out),
        "minlstm": 3 * (L * 6 * D * D + out),
    }
    for case, flops in expect.items():
        model = build(case)
        assert model.flops_per_token(0, T) == pytest.approx(flops, rel=1e-12), case
        with pytest.raises(ValueError, match="src_len=5"):
            model.flops_per_token(5, T)


@pytest.mark.parametrize("case", ARCHS)
def test_a_few_training_steps_reduce_the_loss(case: str) -> None:
    model = build(case, seed=1)
    x = tokens(seed=1, rows=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(25):
        logits = model.lm_forward(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("arch", ["lstm", "residual_lstm", "lstm_no_cell_residual", "minlstm"])
def test_source_side_keys_in_an_lm_config_are_named(arch: str) -> None:
    base = dict(vocab_size=V, d_model=D, n_layers=L, task="lm")
    assert model_config(arch, **base).attention is False  # filled in: no source to attend to
    for key in ("attention", "reverse_source"):
        with pytest.raises(ValueError, match=rf"\.{key}=True: must be False when task='lm'"):
            model_config(arch, **base, **{key: True})
    with pytest.raises(ValueError, match=r"\.task='translation': must be one of \('seq2seq', 'lm'\)"):
        model_config(arch, **{**base, "task": "translation"})
