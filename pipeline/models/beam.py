"""Beam search over any model with the incremental interface (`start_decoding` / `decode_step`).

Batched over sources: each source gets `beam` rows of the model's `DecodeState`, and after every step the state
is reordered (`DecodeState.select`) to follow the surviving hypotheses. Each step takes the best 2 x beam
continuations of a source; an EOS among its best `beam` candidates finishes that hypothesis, the best `beam`
non-EOS candidates live on. A source is done once it has `beam` finished hypotheses (fairseq's rule); at
`max_len` its live hypotheses are finished as they are. The answer is the finished hypothesis with the best
log-probability / length penalty, with GNMT's penalty lp(n) = ((5 + n) / 6) ** length_penalty (Wu et al. 2016;
n counts the EOS; length_penalty=0 ranks by raw log-probability). With beam=1 only the argmax can finish or live
on, so the result is greedy decoding's, token for token. Written here because torch has no beam search, and
generation libraries (fairseq, transformers) would bring their own model classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.models.base import Seq2SeqModel
from pipeline.models.decode import check_max_len, eval_mode


def length_penalty_of(n: int, alpha: float) -> float:
    """GNMT's length normaliser for a hypothesis of n tokens."""
    return ((5.0 + n) / 6.0) ** alpha


@torch.no_grad()
def beam_decode(
    model: Seq2SeqModel,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam: int = 4,
    length_penalty: float = 0.6,
    return_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Beam search -> Long[B, <=max_len] of tokens after BOS (EOS included), pad_id after EOS, like greedy;
    with return_scores also Float64[B]: each answer's log-probability / length penalty."""
    check_max_len(max_len)
    if not (isinstance(beam, int) and beam >= 1):
        raise ValueError(f"beam={beam!r}: must be an int >= 1")
    if not (isinstance(length_penalty, int | float) and length_penalty >= 0):
        raise ValueError(f"length_penalty={length_penalty!r}: must be a number >= 0")
    B, k, V, pad_id = src.size(0), beam, model.config.vocab_size, model.config.pad_id
    device = src.device
    rows = torch.arange(B, device=device)
    with eval_mode(model):
        state = model.start_decoding(src, src_mask).select(rows.repeat_interleave(k))
        # float64 scores: sums of many log-probs must not round two candidates into a tie greedy would not see
        scores = torch.full((B, k), float("-inf"), dtype=torch.float64, device=device)
        scores[:, 0] = 0.0  # only the first copy of each source starts live, so step 0 has no duplicates
        history = torch.empty((B, k, 0), dtype=torch.long, device=device)
        last = torch.full((B * k,), bos_id, dtype=torch.long, device=device)
        finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool, device=device)
        n = min(2 * k, k * V)
        for t in range(max_len):
            logits, state = model.decode_step(last, state)
            logp = F.log_softmax(logits.double(), dim=-1).view(B, k, V)
            top_s, top_i = (scores[:, :, None] + logp).view(B, k * V).topk(n, dim=1)  # best first
            from_beam, token = top_i // V, top_i % V
            is_eos = token == eos_id
            ends = is_eos[:, :k] & top_s[:, :k].isfinite() & ~done[:, None]
            if bool(ends.any()):
                lp = length_penalty_of(t + 1, length_penalty)
                for b, j in ends.nonzero().tolist():
                    if len(finished[b]) < k:
                        seq = torch.cat([history[b, from_beam[b, j]], token[b, j : j + 1]])
                        finished[b].append((top_s[b, j].item() / lp, seq))
                done = torch.tensor([len(f) >= k for f in finished], device=device)
            # The best k non-EOS candidates live on (there are at least k: at most one EOS per live beam).
            order = (is_eos.long() * n + torch.arange(n, device=device)).argsort(dim=1)[:, :k]
            scores, from_beam, token = (x.gather(1, order) for x in (top_s, from_beam, token))
            history = torch.cat(
                [history.gather(1, from_beam[:, :, None].expand(-1, -1, t)), token[:, :, None]], dim=2
            )
            if bool(done.all()):
                break
            state = state.select((rows[:, None] * k + from_beam).view(-1))
            last = token.view(-1)
        lp = length_penalty_of(history.size(2), length_penalty)
        best = []
        for b in range(B):
            for j in range(k):  # sources cut off by max_len finish with their live hypotheses, best first
                if len(finished[b]) < k and bool(scores[b, j].isfinite()):
                    finished[b].append((scores[b, j].item() / lp, history[b, j]))
            best.append(max(finished[b], key=lambda f: f[0]))
        out = torch.full((B, max(len(s) for _, s in best)), pad_id, dtype=torch.long, device=device)
        for b, (_, seq) in enumerate(best):
            out[b, : len(seq)] = seq
        if return_scores:
            return out, torch.tensor([score for score, _ in best], dtype=torch.float64, device=device)
        return out
