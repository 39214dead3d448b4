"""Rotary positions (`TransformerConfig.positions: rope`): attention scores depend only on the query-key offset,
the model has no position table, and a context of K tokens scores the same wherever it sits."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.registry import build_model
from pipeline.models.rotary import Rotary


def test_scores_depend_only_on_the_offset_between_query_and_key() -> None:
    rot = Rotary(head_dim=8, max_len=64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    score = lambda m, n: (rot(q, m) * rot(k, n)).sum().item()  # noqa: E731
    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)  # a different offset, a different score
    assert torch.allclose(rot(q, 0), q)  # position 0 is the identity rotation
    assert rot(q, 5).norm() == pytest.approx(q.norm().item(), rel=1e-6)  # a rotation keeps lengths


def test_a_rope_language_model_has_no_position_table_and_round_trips_its_state() -> None:
    torch.manual_seed(0)
    kw = dict(vocab_size=30, d_model=16, n_layers=2, n_heads=2, task="lm", max_len=40, dropout=0.0)
    learned = build_model("transformer", **kw)
    rope = build_model("transformer", **kw, positions="rope").eval()
    assert any("tgt_pos" in n for n, _ in learned.named_parameters())
    assert not any("pos" in n for n, _ in rope.named_parameters())
    assert learned.num_params() - rope.num_params() == 40 * 16  # the learned table, max_len x d_model
    state = rope.state_dict()
    assert not any(k.endswith((".cos", ".sin")) for k in state)  # rebuilt from the config, not stored
    again = build_model("transformer", **kw, positions="rope").eval()
    again.load_state_dict(state)  # strict: the same keys
    tokens = torch.randint(2, 30, (2, 12))
    with torch.no_grad():
        assert torch.equal(rope.lm_forward(tokens), again.lm_forward(tokens))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(positions="alibi"), r"TransformerConfig.positions='alibi': must be 'learned' or 'rope'"),
        (
            dict(positions="rope", d_model=18, n_heads=2),
            r"positions='rope': must be 'learned' with an odd head",
        ),
    ],
)
def test_bad_positions_name_the_key(kw: dict, match: str) -> None:
    base = dict(vocab_size=30, d_model=16, n_layers=1, n_heads=2, task="lm")
    with pytest.raises(ValueError, match=match):
        build_model("transformer", **{**base, **kw})
