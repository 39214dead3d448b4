"""`minlstm`: seq2seq on minLSTM layers (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

minLSTM drops the gates' dependence on h_{t-1}, so the recurrence is linear in h and can be computed for all
time steps at once:

    f_t = sigmoid(W_f x_t), i_t = sigmoid(W_i x_t), h~_t = g(W_h x_t)       (one [d_in -> 3d] matmul for all t)
    f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)                        (normalised: length-independent scale)
    h_t = f'_t * h_{t-1} + i'_t * h~_t

with g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise (the paper's log-space version: keeps h~ > 0 so that h
has a logarithm). h_t = A_t (h_0 + sum_{k<=t} i'_k h~_k / A_k) with A_t = prod_{k<=t} f'_k, which in log space is a
cumsum plus a logcumsumexp: O(T) work, O(log T) depth on parallel hardware, no Python loop. Written by hand
because PyTorch has no associative-scan op for this (torch._higher_order_ops.associative_scan is private).

Same embeddings, attention, source reversal and output as `lstm`. The cell's state is h alone (no c); the
encoder hands the decoder each layer's final h, kept in log space as (h, log h).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.models.attention import LuongAttention
from pipeline.models.configs import MinLSTMConfig
from pipeline.models.log_scan import logcumsumexp_dim1
from pipeline.models.lstm import LSTMSeq2Seq, State

H0 = 0.5  # g(0): the initial state of the paper's code (zeros passed through g)


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log(g(x)), stable for very negative x (where sigmoid(x) would underflow to 0)."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def minlstm_parallel(
    pre_f: torch.Tensor, pre_i: torch.Tensor, pre_h: torch.Tensor, log_h0: torch.Tensor
) -> torch.Tensor:
    """Pre-activations [B,T,d] and log h_0 [B,d] -> log h_t [B,T,d] for all t, by the log-space scan.

    Computed in at least float32 (also under autocast): the two terms added at the end reach ~T and cancel.
    """
    dtype = torch.promote_types(pre_f.dtype, torch.float32)
    pre_f, pre_i, pre_h, log_h0 = (t.to(dtype) for t in (pre_f, pre_i, pre_h, log_h0))
    diff = F.softplus(-pre_f) - F.softplus(-pre_i)
    log_f = -F.softplus(diff)  # log f'_t = log(sigmoid(pf) / (sigmoid(pf) + sigmoid(pi)))
    log_i = -F.softplus(-diff)  # log i'_t
    log_a = log_f.cumsum(dim=1)  # log A_t
    log_sum = logcumsumexp_dim1(log_i + log_g(pre_h) - log_a)  # torch.logcumsumexp(., dim=1), chunked: faster
    return log_a + torch.logaddexp(log_h0[:, None, :], log_sum)


def minlstm_sequential(
    pre_f: torch.Tensor, pre_i: torch.Tensor, pre_h: torch.Tensor, h0: torch.Tensor
) -> torch.Tensor:
    """The same recurrence one step at a time, in real space: the reference for `minlstm_parallel`."""
    f, i = torch.sigmoid(pre_f), torch.sigmoid(pre_i)
    f, i, h_tilde = f / (f + i), i / (f + i), log_g(pre_h).exp()
    h, out = h0, []
    for t in range(pre_f.size(1)):
        h = f[:, t] * h + i[:, t] * h_tilde[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


class MinLSTMLayer(nn.Module):
    def __init__(self, d_in: int, d_hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, 3 * d_hidden)  # f, i, h~ pre-activations

    def forward(self, x: torch.Tensor, log_h0: torch.Tensor) -> torch.Tensor:
        """x [B,T,d_in], log h_0 [B,d] -> log h [B,T,d]."""
        pre_f, pre_i, pre_h = self.proj(x).chunk(3, dim=-1)
        return minlstm_parallel(pre_f, pre_i, pre_h, log_h0)


class MinLSTM(nn.Module):
    """Batch-first stack of minLSTM layers; dropout between layers. Causal, so right padding never reaches a real
    position, and `lengths` picks each row's final state at its last real step."""

    def __init__(self, d_in: int, d_hidden: int, n_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_hidden = d_hidden
        self.layers = nn.ModuleList(
            MinLSTMLayer(d_in if k == 0 else d_hidden, d_hidden) for k in range(n_layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, log_h0: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """x [B,T,d_in], log_h0 [L,B,d] or None (h_0 = g(0)) -> h [B,T,d], final (h, log h) [L,B,d]."""
        B = x.size(0)
        rows = torch.arange(B, device=x.device)
        last = x.size(1) - 1 if lengths is None else lengths.to(x.device) - 1
        finals = []
        for k, layer in enumerate(self.layers):
            init = x.new_full((B, self.d_hidden), H0).log() if log_h0 is None else log_h0[k]
            log_h = layer(x, init)
            finals.append(log_h[rows, last])
            h = log_h.exp().to(x.dtype)
            x = self.drop(h) if k < len(self.layers) - 1 else h
        log_final = torch.stack(finals)
        return x, (log_final.exp(), log_final)


class MinLSTMSeq2Seq(LSTMSeq2Seq):
    config: MinLSTMConfig
    # h alone: the decoding state also keeps log h, a function of h, so it adds no capacity
    state_vectors: ClassVar[int] = 1

    def _build_stacks(self) -> None:
        c = self.config
        assert c.d_embed is not None
        self.encoder = MinLSTM(c.d_embed, c.d_model, c.n_layers, c.dropout)
        self.decoder = MinLSTM(c.d_embed, c.d_model, c.n_layers, c.dropout)

    def _run_encoder(self, packed: PackedSequence) -> tuple[PackedSequence, State]:
        x, lengths = pad_packed_sequence(packed, batch_first=True)  # zeros at padding
        out, state = self.encoder(x, lengths=lengths)
        return pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), state

    def _run_decoder(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return self.decoder(x, log_h0=state[1])[0]

    def _decode_with_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.decoder(x, log_h0=state[1])  # the state is (h, log h); the recurrence reads log h

    def initial_state(self, x: torch.Tensor) -> State:
        """h_0 = g(0), as `MinLSTM` starts without a given state."""
        h = x.new_full((self.config.n_layers, x.size(0), self.config.d_model), H0)
        return h, h.log()

    def flops_per_token(self, src_len: int, tgt_len: int) -> float:
        """Only the input projections are matmuls: layer(d_in) = 2 * 3 * d_in * d; see docs/flops.md."""
        self.check_lm_src_len(src_len)
        c = self.config
        d, e = c.d_model, c.d_embed
        assert e is not None
        stack = 6.0 * e * d + (c.n_layers - 1) * 6.0 * d * d
        decoder = stack + 2.0 * d * c.vocab_size
        if c.attention:
            decoder += LuongAttention.flops_per_token(d, src_len)
        return 3.0 * (stack * src_len / tgt_len + decoder)
