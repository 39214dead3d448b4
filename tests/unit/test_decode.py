"""Incremental decoding (`start_decoding` / `decode_step`), greedy and beam search, for every architecture.

Tolerance: per-step logits of the incremental path equal the full forward's to atol 1e-5 in fp32 (they differ only
by summation order: a cached key/value or one recurrent step vs the whole sequence); tokens are compared exactly.
"""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.beam import beam_decode, length_penalty_of
from pipeline.models.decode import greedy_decode, greedy_decode_full_rerun
from pipeline.models.decode_state import DecodeState
from pipeline.models.registry import build_model

V, PAD, BOS = 24, 0, 1
LSTM_KW = dict(vocab_size=V, d_model=16, n_layers=2)
CASES = {
    "lstm": ("lstm", LSTM_KW),
    "lstm_noattn_reversed": ("lstm", LSTM_KW | dict(attention=False, reverse_source=True)),
    "residual_lstm": ("residual_lstm", dict(vocab_size=V, d_model=16, n_layers=3, residual_from=1)),
    "residual_lstm_noattn": (
        "residual_lstm",
        dict(vocab_size=V, d_model=16, n_layers=3, residual_from=1, attention=False),
    ),
    "lstm_newton": ("lstm", LSTM_KW | dict(recurrence="newton")),  # decoding steps nn.LSTM's own forward
    "residual_lstm_newton": (
        "residual_lstm",
        dict(vocab_size=V, d_model=16, n_layers=2, recurrence="newton"),
    ),
    "lstm_no_cell_residual": ("lstm_no_cell_residual", LSTM_KW),
    "minlstm": ("minlstm", LSTM_KW),
    "minlstm_noattn": ("minlstm", LSTM_KW | dict(attention=False)),
    "transformer": (
        "transformer",
        dict(vocab_size=V, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_len=40),
    ),
    "transformer_rope": (
        "transformer",
        dict(vocab_size=V, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_len=40, positions="rope"),
    ),
}


def build(case: str, seed: int = 0, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    arch, kw = CASES[case]
    return build_model(arch, **{**kw, **overrides}).eval()


def source(
    lengths: tuple[int, ...] = (7, 5, 3, 1), seed: int = 0, vocab: int = V
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    src = torch.randint(3, vocab, (len(lengths), S), generator=g)
    mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]
    return src.masked_fill(~mask, PAD), mask


def an_eos_that_occurs(model: torch.nn.Module, src: torch.Tensor, mask: torch.Tensor) -> int:
    """A token the model greedily emits mid-sequence, used as EOS so that rows stop at different steps."""
    free = greedy_decode_full_rerun(model, src, mask, BOS, -1, 12)  # eos -1: never stops
    return int(free[0, 3])


@pytest.mark.parametrize("case", CASES)
def test_decode_step_logits_equal_full_forward(case: str) -> None:
    model = build(case)
    src, mask = source()
    tgt_in = torch.randint(4, V, (4, 9), generator=torch.Generator().manual_seed(1))
    tgt_in[:, 0] = BOS
    with torch.no_grad():
        full = model(src, mask, tgt_in)
        state = model.start_decoding(src, mask)
        steps = []
        for t in range(tgt_in.size(1)):
            logits, state = model.decode_step(tgt_in[:, t], state)
            steps.append(logits)
    assert state.step == tgt_in.size(1)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_incremental_greedy_equals_full_rerun(case: str) -> None:
    model = build(case)
    src, mask = source()
    eos = an_eos_that_occurs(model, src, mask)
    ref = greedy_decode_full_rerun(model, src, mask, BOS, eos, 20)
    out = greedy_decode(model, src, mask, BOS, eos, 20)
    assert torch.equal(out, ref)
    assert (ref == eos).any()  # EOS really ended some row early: the padding path is exercised


@pytest.mark.parametrize("case", CASES)
def test_beam_width_1_equals_greedy(case: str) -> None:
    model = build(case, seed=3)
    src, mask = source(seed=3)
    eos = an_eos_that_occurs(model, src, mask)
    greedy = greedy_decode(model, src, mask, BOS, eos, 20)
    for alpha in (0.0, 0.6):
        assert torch.equal(beam_decode(model, src, mask, BOS, eos, 20, beam=1, length_penalty=alpha), greedy)


def sequence_logprobs(
    model: torch.nn.Module, src: torch.Tensor, mask: torch.Tensor, seqs: list[tuple[int, ...]]
) -> list[float]:
    """Teacher-forced log-probability of each sequence (one source row), by one full forward over all of them."""
    T = max(map(len, seqs))
    tgt = torch.tensor([(*s, *(PAD,) * (T - len(s))) for s in seqs])
    tgt_in = torch.cat([torch.full((len(seqs), 1), BOS), tgt[:, :-1]], dim=1)  # logit t sees tgt_in[:, :t+1]
    n = len(seqs)
    with torch.no_grad():
        logp = F.log_softmax(model(src.expand(n, -1), mask.expand(n, -1), tgt_in).double(), dim=-1)
    picked = logp.gather(2, tgt[:, :, None])[:, :, 0]
    return [float(picked[i, : len(s)].sum()) for i, s in enumerate(seqs)]


@pytest.mark.parametrize("case", ["lstm", "residual_lstm_noattn", "transformer"])
def test_wide_beam_finds_the_exhaustive_best_and_scores_it_right(case: str) -> None:
    """With the beam wider than the number of hypotheses, beam search is exhaustive search over every sequence
    that ends in EOS or reaches max_len, ranked by log-probability / length penalty; the score it reports is the
    full forward's for that sequence (a state not reordered with its beam would score another prefix)."""
    vocab, eos, max_len = 5, 2, 4
    model = build(case, seed=5, vocab_size=vocab)
    src, mask = source((4, 3, 2, 1), seed=5, vocab=vocab)
    words = [a for a in range(vocab) if a != eos]
    hypotheses = [(*p, eos) for n in range(max_len) for p in itertools.product(words, repeat=n)]
    hypotheses += list(itertools.product(words, repeat=max_len))
    assert len(hypotheses) == 1 + 4 + 16 + 64 + 256
    best = {}
    for b in range(src.size(0)):
        n = int(mask[b].sum())
        logp = dict(
            zip(
                hypotheses,
                sequence_logprobs(model, src[b : b + 1, :n], mask[b : b + 1, :n], hypotheses),
                strict=True,
            )
        )
        for alpha in (0.0, 4.0):  # 4: strong enough to prefer long answers of a near-uniform random model
            out, scores = beam_decode(
                model,
                src[b : b + 1, :n],
                mask[b : b + 1, :n],
                BOS,
                eos,
                max_len,
                400,
                alpha,
                return_scores=True,
            )
            best[alpha, b] = max(hypotheses, key=lambda s: logp[s] / length_penalty_of(len(s), alpha))
            assert tuple(out[0].tolist()) == best[alpha, b]
            assert float(scores[0]) == pytest.approx(
                logp[best[alpha, b]] / length_penalty_of(len(best[alpha, b]), alpha)
            )
    assert any(best[0.0, b] != best[4.0, b] for b in range(src.size(0)))  # the penalty changes some answers
    # and some answers ended by EOS after >= 2 tokens, where the penalty is not 1


class PrefixTableModel(torch.nn.Module):
    """A stand-in decoder whose next-token logits are a fixed random table indexed by a hash of the prefix, so
    answers of every length and both endings are likely to win somewhere; EOS first is discouraged."""

    def __init__(self, vocab: int, eos: int, seed: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab, pad_id=PAD)
        self.table = 2.0 * torch.randn(97, vocab, generator=torch.Generator().manual_seed(seed))
        self.eos = eos

    def start_decoding(self, src: torch.Tensor, src_mask: torch.Tensor) -> DecodeState:
        return DecodeState({"h": src[:, 0].clone()})

    def decode_step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        h = (state.tensors["h"] * 31 + tokens + 7) % self.table.size(0)
        logits = self.table[h].clone()
        if state.step == 0:
            logits[:, self.eos] -= 4.0
        return logits, state.replace(h=h)

    def logprobs(self, src_row: torch.Tensor, seqs: list[tuple[int, ...]]) -> list[float]:
        """Each sequence's log-probability, walked one step at a time (all sequences as one batch)."""
        n, T = len(seqs), max(map(len, seqs))
        tokens = torch.tensor([(*s, *(PAD,) * (T - len(s))) for s in seqs])
        state = self.start_decoding(src_row[None].expand(n, -1), src_row[None].expand(n, -1) > 0)
        prev, total = torch.full((n,), BOS), torch.zeros(n, dtype=torch.float64)
        for t in range(T):
            logits, state = self.decode_step(prev, state)
            step = F.log_softmax(logits.double(), dim=-1).gather(1, tokens[:, t : t + 1])[:, 0]
            total += torch.where(torch.tensor([len(s) > t for s in seqs]), step, 0.0)
            prev = tokens[:, t]
        return total.tolist()


def test_beam_length_penalty_and_eos_against_exhaustive_search_on_a_table_model() -> None:
    """A batch of sources, several penalties: every answer is the exhaustive best (EOS-ended at every length or
    cut at max_len) and its reported score is its own log-probability / lp."""
    vocab, eos, max_len = 5, 2, 4
    model = PrefixTableModel(vocab, eos, seed=0)
    src = torch.tensor([[3], [4], [5], [6], [7], [8], [9], [10]])
    words = [a for a in range(vocab) if a != eos]
    hypotheses = [(*p, eos) for n in range(max_len) for p in itertools.product(words, repeat=n)]
    hypotheses += list(itertools.product(words, repeat=max_len))
    logp = [dict(zip(hypotheses, model.logprobs(row, hypotheses), strict=True)) for row in src]
    answers = []
    for alpha in (0.0, 0.6, 2.0):
        out, scores = beam_decode(model, src, src > 0, BOS, eos, max_len, 400, alpha, return_scores=True)
        for b in range(src.size(0)):
            best = max(hypotheses, key=lambda h: logp[b][h] / length_penalty_of(len(h), alpha))
            got = out[b].tolist()
            assert tuple(got[: len(best)]) == best and all(t == PAD for t in got[len(best) :])
            assert float(scores[b]) == pytest.approx(logp[b][best] / length_penalty_of(len(best), alpha))
            answers.append((alpha, best))
    assert {len(h) for _, h in answers} >= {2, 3, 4}  # the search really ranked answers of several lengths
    assert any(h[-1] == eos and len(h) >= 2 and a > 0 for a, h in answers)  # EOS-ended, penalised (lp != 1)
    assert any(h[-1] != eos for _, h in answers)  # and cut off at max_len


@pytest.mark.parametrize("case", ["residual_lstm", "minlstm", "transformer"])
def test_beam_over_a_batch_equals_each_source_alone(case: str) -> None:
    """Reordering the state follows each source's own beams: batching never mixes sources."""
    model = build(case, seed=7)
    src, mask = source(seed=7)
    eos = an_eos_that_occurs(model, src, mask)
    batched = beam_decode(model, src, mask, BOS, eos, 15, beam=3)
    for b in range(src.size(0)):
        n = int(mask[b].sum())
        alone = beam_decode(model, src[b : b + 1, :n], mask[b : b + 1, :n], BOS, eos, 15, beam=3)[0]
        row = batched[b]
        assert torch.equal(row[: alone.numel()], alone) and bool((row[alone.numel() :] == PAD).all())
        ends = (alone == eos).nonzero()
        assert ends.numel() <= 1 and (ends.numel() == 0 or int(ends[0]) == alone.numel() - 1)  # EOS ends it


def test_decoding_keeps_training_mode_and_checks_arguments() -> None:
    model = build("transformer").train()
    src, mask = source()
    greedy_decode(model, src, mask, BOS, 2, 4)
    beam_decode(model, src, mask, BOS, 2, 4, beam=2)
    assert model.training
    with pytest.raises(ValueError, match="beam=0"):
        beam_decode(model, src, mask, BOS, 2, 4, beam=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_decode(model, src, mask, BOS, 2, 4, length_penalty=-1.0)
    with pytest.raises(ValueError, match="max_len=0"):
        greedy_decode(model, src, mask, BOS, 2, 0)
    with pytest.raises(ValueError, match="past TransformerConfig.max_len=40"):
        greedy_decode(model, src, mask, BOS, -1, 41)


def test_decode_benchmark_quick_run_writes_json(tmp_path) -> None:
    """Smoke run of benchmarks/bench_decode.py: both decoders agree and every rate is positive (no speed asserted)."""
    from benchmarks.bench_decode import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "decode_cpu.json").read_text())
    rows = result["rows"]
    assert {(r["arch"], r["decode_len"]) for r in rows} == {
        (a, n) for a in ("lstm", "transformer") for n in (8, 16)
    }
    for r in rows:
        assert r["same_tokens"] and r["speedup"] > 0 and r["wall_speedup"] > 0
        assert r["new_tokens_per_s"]["min"] > 0 and r["old_tokens_per_s"]["min"] > 0
