"""cuDNN LSTM encoder-decoder (Sutskever et al. 2014), optionally with Luong global attention.

One multi-layer `nn.LSTM` call each for encoder and decoder: no Python loop over time while training, so a GPU
runs cuDNN's fused kernels. The encoder reads a packed sequence, so its final (h, c) - all the decoder gets
without attention - comes from each row's last real token.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.models.attention import LuongAttention
from pipeline.models.base import Seq2SeqModel
from pipeline.models.configs import LSTMConfig
from pipeline.models.decode_state import DecodeState
from pipeline.models.newton_lstm import (
    NewtonLSTM,
    NewtonSettings,
    measured_iters,
    newton_flops_per_token,
    newton_step_stats,
)

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [n_layers, B, d_model]


def sequential_lstm(lstm: nn.LSTM, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """nn.LSTM's own forward, also for a NewtonLSTM: decoding feeds one step at a time, so there is nothing for the
    parallel solver to do, and its `step_stats` stay those of training."""
    if isinstance(lstm, NewtonLSTM):
        return nn.LSTM.forward(lstm, x, state)
    return lstm(x, state)  # through __call__, so module hooks (e.g. ZeRO-3 parameter gathering) still run


def reverse_real_tokens(src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first lengths[b] tokens of each row; the right padding stays where it is."""
    pos = torch.arange(src.size(1), device=src.device)[None, :]
    n = lengths[:, None]
    return src.gather(1, torch.where(pos < n, n - 1 - pos, pos))


class LSTMSeq2Seq(Seq2SeqModel):
    """Encoder-decoder LSTM. Subclasses change only the layer stacks (`_build_stacks`, `_run_*`)."""

    config: LSTMConfig

    def __init__(self, config: LSTMConfig) -> None:
        assert config.d_embed is not None
        super().__init__(config, config.d_embed)
        self.drop = nn.Dropout(config.dropout)
        self._build_stacks()
        if config.task == "lm":
            self.encoder = None  # decoder only: the stack that reads the tokens is `decoder`
        self.attention = LuongAttention(config.d_model) if config.attention else None
        if config.init_range is not None:
            self.init_uniform()
        else:
            # PyTorch defaults elsewhere; N(0, 1/d) rows keep tied-output logits O(1) instead of O(sqrt(d)).
            for emb in (self.src_embed, self.tgt_embed):
                if emb is not None:
                    nn.init.normal_(emb.weight, std=config.d_embed**-0.5)

    def _lstm(self, *args: Any, **kwargs: Any) -> nn.LSTM:
        """An nn.LSTM, or with recurrence=newton its subclass with the same weights solved by Newton scans."""
        c = self.config
        if c.recurrence == "sequential":
            return nn.LSTM(*args, **kwargs)
        settings = NewtonSettings(c.newton_max_iters, float(c.newton_tol), c.newton_on_fail)
        return NewtonLSTM(*args, settings=settings, **kwargs)

    def step_stats(self) -> dict[str, float]:
        """Newton iterations, residuals and fallbacks of the last forward/backward; {} when sequential."""
        return newton_step_stats(self)

    def _build_stacks(self) -> None:
        c = self.config
        inter = c.dropout if c.n_layers > 1 else 0.0  # nn.LSTM warns about dropout with one layer
        self.encoder = self._lstm(c.d_embed, c.d_model, c.n_layers, batch_first=True, dropout=inter)
        self.decoder = self._lstm(c.d_embed, c.d_model, c.n_layers, batch_first=True, dropout=inter)

    def _run_encoder(self, packed: PackedSequence) -> tuple[PackedSequence, State]:
        return self.encoder(packed)

    def _run_decoder(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return self.decoder(x, state)[0]

    def _decode_with_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The decoder stack run step by step from `state`: outputs [B,T,d] and the final state (decoding)."""
        return sequential_lstm(self.decoder, x, state)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, State]:
        """-> encoder outputs [B,S,d] (zeros at padding) and the final (h, c) of each row's last real token."""
        lengths = self.check_source(src, src_mask)
        lengths_cpu = lengths.cpu()  # pack_padded_sequence wants CPU lengths
        if bool((lengths_cpu == 0).any()):
            raise ValueError("every source row needs at least one real token (src_mask row is all False)")
        if self.config.reverse_source:
            src = reverse_real_tokens(src, lengths)
        x = self.drop(self.src_embed(src))
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        out, state = self._run_encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        return memory, state

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        if self.config.task == "lm":
            return self.lm_call(src, src_mask, tgt_in)
        memory, state = self.encode(src, src_mask)
        out = self._run_decoder(self.drop(self.tgt_embed(tgt_in)), state)
        if self.attention is not None:
            # After reversal the real states still sit at positions [0, len), so src_mask still applies.
            out = self.attention(out, memory, src_mask)
        return self.out_proj(self.drop(out))

    def initial_state(self, x: torch.Tensor) -> State:
        """A language model's state before its first token: zeros [L,B,d] (minlstm overrides)."""
        zeros = x.new_zeros(self.config.n_layers, x.size(0), self.config.d_model)
        return zeros, zeros

    def lm_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.tgt_embed(tokens))
        return self.drop(self._run_decoder(x, self.initial_state(x)))

    def start_decoding(self, src: torch.Tensor, src_mask: torch.Tensor) -> DecodeState:
        """Encode once; the state is the decoder's (h, c) per layer (batch-first) plus the attention memory."""
        if self.config.task == "lm":  # src: an empty [B, 0] batch, as lm_call takes
            h, c = self.initial_state(self.tgt_embed.weight.new_empty(src.size(0), 0))
            return DecodeState({"h": h.transpose(0, 1), "c": c.transpose(0, 1)})
        memory, (h, c) = self.encode(src, src_mask)
        tensors = {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}
        if self.attention is not None:
            tensors |= {"memory": memory, "src_mask": src_mask}
        return DecodeState(tensors)

    def decode_step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """tokens Long[B] (the previous output, BOS first) -> next-token logits [B,V]: one recurrent step."""
        t = state.tensors
        h0 = (t["h"].transpose(0, 1).contiguous(), t["c"].transpose(0, 1).contiguous())
        out, (h, c) = self._decode_with_state(self.drop(self.tgt_embed(tokens[:, None])), h0)
        if self.attention is not None:
            out = self.attention(out, t["memory"], t["src_mask"])
        return self.out_proj(self.drop(out))[:, 0], state.replace(h=h.transpose(0, 1), c=c.transpose(0, 1))

    state_vectors: ClassVar[int] = 2  # width-d vectors a layer carries through time: h and c

    def state_floats(self, seq_len: int, src_len: int = 0) -> int:
        """`state_vectors` x d per layer (h and c here; the same under recurrence=newton, which solves the same
        recurrence), whatever seq_len; with attention, plus the encoder outputs it reads (src_len x d)."""
        self.check_state_lengths(seq_len, src_len)
        c = self.config
        memory = src_len * c.d_model if c.attention else 0
        return self.state_vectors * c.n_layers * c.d_model + memory

    def flops_per_token(
        self, src_len: int, tgt_len: int, newton_iters: tuple[float, float] | None = None
    ) -> float:
        """3 x forward FLOPs per target token; derivation in docs/flops.md. With recurrence=newton each stack costs
        what its iterations do (`newton_flops_per_token`, docs/parallel_lstm.md): `newton_iters` = mean (forward,
        backward) scans per layer solve, else the means of this model's training solves so far, else the upper
        bound min(newton_max_iters, sequence length) (causality: T scans solve a length-T sequence exactly)."""
        self.check_lm_src_len(src_len)
        c = self.config
        d, e = c.d_model, c.d_embed
        assert e is not None
        measured = newton_iters or measured_iters(self)

        def stack3(seq_len: int) -> float:  # training FLOPs per token of one stack
            if c.recurrence == "sequential":  # 3 x (2 * 4 gates * (d_in + d) * d) per layer
                return 3.0 * (8.0 * (e + d) * d + (c.n_layers - 1) * 8.0 * (2 * d) * d)
            iters = measured or (float(min(c.newton_max_iters, seq_len)),) * 2
            return newton_flops_per_token(e, d, iters) + (c.n_layers - 1) * newton_flops_per_token(
                d, d, iters
            )

        rest = 2.0 * d * c.vocab_size
        if c.attention:
            rest += LuongAttention.flops_per_token(d, src_len)
        return stack3(src_len) * src_len / tgt_len + stack3(tgt_len) + 3.0 * rest
