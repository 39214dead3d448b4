"""cuDNN LSTM encoder-decoder (Sutskever et al. 2014), optionally with Luong global attention.

One multi-layer `nn.LSTM` call each for encoder and decoder: no Python loop over time while training, so a GPU
runs cuDNN's fused kernels. The encoder reads a packed sequence, so its final (h, c) - all the decoder gets
without attention - comes from each row's last real token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.models.attention import LuongAttention
from pipeline.models.base import Seq2SeqConfig, Seq2SeqModel, check, is_int

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [n_layers, B, d_model]


@dataclass(kw_only=True)
class LSTMConfig(Seq2SeqConfig):
    """Sutskever et al. 2014: n_layers=4, d_model=1000, d_embed=1000, reverse_source=True, attention=False,
    init_range=0.08 (they also used separate, untied softmax weights: tie_embeddings=False)."""

    attention: bool = True  # Luong dot-product global attention over encoder states
    reverse_source: bool = False  # reverse each row's real tokens; padding stays on the right
    d_embed: int | None = None  # None resolves to d_model on construction

    def validate(self) -> None:
        super().validate()
        if self.d_embed is None:
            self.d_embed = self.d_model
        check(is_int(self.d_embed) and self.d_embed > 0, self, "d_embed", "None or a positive int")
        check(isinstance(self.attention, bool), self, "attention", "a bool")
        check(isinstance(self.reverse_source, bool), self, "reverse_source", "a bool")
        check(
            not self.tie_embeddings or self.d_embed == self.d_model,
            self,
            "d_embed",
            f"equal to d_model={self.d_model} when tie_embeddings=True",
        )


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
        self.attention = LuongAttention(config.d_model) if config.attention else None
        if config.init_range is not None:
            self.init_uniform()
        else:
            # PyTorch defaults elsewhere; N(0, 1/d) rows keep tied-output logits O(1) instead of O(sqrt(d)).
            for emb in (self.src_embed, self.tgt_embed):
                nn.init.normal_(emb.weight, std=config.d_embed**-0.5)

    def _build_stacks(self) -> None:
        c = self.config
        inter = c.dropout if c.n_layers > 1 else 0.0  # nn.LSTM warns about dropout with one layer
        self.encoder = nn.LSTM(c.d_embed, c.d_model, c.n_layers, batch_first=True, dropout=inter)
        self.decoder = nn.LSTM(c.d_embed, c.d_model, c.n_layers, batch_first=True, dropout=inter)

    def _run_encoder(self, packed: PackedSequence) -> tuple[PackedSequence, State]:
        return self.encoder(packed)

    def _run_decoder(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return self.decoder(x, state)[0]

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
        memory, state = self.encode(src, src_mask)
        out = self._run_decoder(self.drop(self.tgt_embed(tgt_in)), state)
        if self.attention is not None:
            # After reversal the real states still sit at positions [0, len), so src_mask still applies.
            out = self.attention(out, memory, src_mask)
        return self.out_proj(self.drop(out))

    def flops_per_token(self, src_len: int, tgt_len: int) -> float:
        """3 x forward FLOPs per target token; derivation in docs/flops.md."""
        c = self.config
        d, e = c.d_model, c.d_embed
        assert e is not None
        stack = 8.0 * (e + d) * d + (c.n_layers - 1) * 8.0 * (2 * d) * d  # 2 * 4 gates * (d_in + d) * d
        decoder = stack + 2.0 * d * c.vocab_size
        if c.attention:
            decoder += LuongAttention.flops_per_token(d, src_len)
        return 3.0 * (stack * src_len / tgt_len + decoder)
