"""State size each model computes: hand counts, the tensors nn.LSTM returns, and the decoding state."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.registry import MODEL_REGISTRY, build_model

V, D, LAYERS, T, S = 20, 6, 2, 5, 4
CASES = {
    "lstm": ("lstm", {}),
    "lstm_newton": ("lstm", {"recurrence": "newton"}),
    "residual_lstm": ("residual_lstm", {"residual_from": 1}),
    "lstm_no_cell_residual": ("lstm_no_cell_residual", {}),
    "minlstm": ("minlstm", {}),
    "transformer": ("transformer", {"n_heads": 2, "max_len": 16}),
}
# hand counts at d = 6, 2 layers: h and c (2 x 6) per layer; h alone (6) per layer; K and V (2 x 6) per layer
# and position, at 5 positions
HAND_LM = {
    "lstm": 2 * 6 * 2,
    "lstm_newton": 2 * 6 * 2,
    "residual_lstm": 2 * 6 * 2,
    "lstm_no_cell_residual": 6 * 2,
    "minlstm": 6 * 2,
    "transformer": 2 * 6 * 5 * 2,
}


def build(case: str, task: str = "lm", **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    arch, kw = CASES[case]
    return build_model(arch, vocab_size=V, d_model=D, n_layers=LAYERS, task=task, **{**kw, **overrides})


def test_every_registry_arch_is_covered() -> None:
    assert {arch for arch, _ in CASES.values()} == set(MODEL_REGISTRY)


@pytest.mark.parametrize("case", CASES)
def test_state_floats_hand_count(case: str) -> None:
    model = build(case)
    assert model.state_floats(T) == HAND_LM[case]
    assert model.state_bits(T) == 32 * HAND_LM[case]  # fp32 parameters
    assert model.state_bits(T, bits_per_float=16) == 16 * HAND_LM[case]
    recurrent = case != "transformer"
    assert (model.state_floats(3 * T) == model.state_floats(T)) is recurrent  # only the cache grows with L


def test_lstm_state_is_the_tensors_nn_lstm_returns() -> None:
    """h_n and c_n of the stack, per batch row: the LSTM's and the residual LSTM's (one nn.LSTM per layer)."""
    x = torch.randn(3, T, D)
    for case in ("lstm", "lstm_newton"):
        _, (h_n, c_n) = build(case).decoder(x)
        assert isinstance(h_n, torch.Tensor) and (h_n.numel() + c_n.numel()) // 3 == build(case).state_floats(
            T
        )
    model = build("residual_lstm")
    total = sum(sum(t.numel() for t in layer(x)[1]) for layer in model.decoder)
    assert total // 3 == model.state_floats(T)


def decoding_state_floats(model: torch.nn.Module, task: str, rows: int = 3) -> dict[str, int]:
    """Floats per row of each tensor `decode_step` carries after T steps."""
    if task == "lm":
        src, mask = torch.zeros(rows, 0, dtype=torch.long), torch.zeros(rows, 0, dtype=torch.bool)
    else:
        src, mask = torch.randint(1, V, (rows, S)), torch.ones(rows, S, dtype=torch.bool)
    state = model.start_decoding(src, mask)
    for _ in range(T):
        _, state = model.decode_step(torch.randint(1, V, (rows,)), state)
    return {k: v.numel() // rows for k, v in state.tensors.items() if v.is_floating_point()}


@pytest.mark.parametrize("case", ["lstm", "lstm_newton", "residual_lstm", "transformer"])
@pytest.mark.parametrize("task", ["lm", "seq2seq"])
def test_state_floats_is_what_decoding_carries(case: str, task: str) -> None:
    model = build(case, task=task).eval()
    src_len = S if task == "seq2seq" else 0
    with torch.no_grad():
        carried = sum(decoding_state_floats(model, task).values())
    assert model.state_floats(T, src_len) == carried
    if task == "seq2seq":
        assert model.state_floats(T, src_len) > model.state_floats(T, 0)  # the source memory counts


@pytest.mark.parametrize("case", ["lstm_no_cell_residual", "minlstm"])
def test_half_of_the_carried_tensors_hold_nothing_new(case: str) -> None:
    """Decoding carries (h, c) but the state is h alone: for lstm_no_cell_residual the next logits ignore c;
    for minlstm c is log h. So state_floats counts half of what decoding carries."""
    model = build(case).eval()
    with torch.no_grad():
        carried = decoding_state_floats(model, "lm")
        assert model.state_floats(T) == sum(carried.values()) // 2 == carried["h"]
        src = torch.zeros(2, 0, dtype=torch.long)
        state = model.start_decoding(src, src.bool())
        tok = torch.randint(1, V, (2,))
        state = model.decode_step(tok, state)[1]
        h, c = state.tensors["h"], state.tensors["c"]
        if case == "minlstm":
            torch.testing.assert_close(c, h.log())
        else:
            a = model.decode_step(tok, state.replace(c=torch.randn_like(c)))[0]
            b = model.decode_step(tok, state.replace(c=torch.zeros_like(c)))[0]
            torch.testing.assert_close(a, b)
            changed = model.decode_step(tok, state.replace(h=torch.randn_like(h)))[0]
            assert (changed - a).abs().amax() > 1e-4  # h does carry the state


def test_bad_lengths_raise() -> None:
    with pytest.raises(ValueError, match="lengths must be ints >= 0"):
        build("lstm").state_floats(-1)
    with pytest.raises(ValueError, match="task='lm' model has no source"):
        build("transformer").state_floats(T, 3)
