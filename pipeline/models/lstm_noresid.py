"""`lstm_no_cell_residual`: the `lstm` seq2seq with the cell state's residual through time removed.

The LSTM cell update c_t = f_t * c_{t-1} + i_t * g_t is a residual connection through time (a ResNet rotated by
90 degrees: the identity path f_t = 1 carries c across steps). This ablation keeps only c_t = i_t * g_t, so state
crosses time through h_{t-1} -> gates alone, like a plain RNN with LSTM gating. The forget gate has nothing left to
gate and is dropped (3 gates, not 4), so N and the FLOPs count only weights that do something.

Same embeddings, (optional) Luong attention, source reversal and output projection as `lstm`; the encoder's
final c is handed to the decoder but unused by it (c_t does not read c_{t-1}). Runs on `CustomLSTM`
(pipeline/models/recurrent_cell.py), which with the residual switched on matches nn.LSTM.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.models.attention import LuongAttention
from pipeline.models.configs import LSTMNoCellResidualConfig
from pipeline.models.lstm import LSTMSeq2Seq, State
from pipeline.models.recurrent_cell import CustomLSTM

GATES = 3  # i, g, o


class LSTMNoCellResidualSeq2Seq(LSTMSeq2Seq):
    config: LSTMNoCellResidualConfig
    # h alone: c_t = i_t * g_t does not read c_{t-1}, so the c the decoding state carries holds nothing
    state_vectors: ClassVar[int] = 1

    def _build_stacks(self) -> None:
        c = self.config
        assert c.d_embed is not None
        self.encoder = CustomLSTM(c.d_embed, c.d_model, c.n_layers, c.dropout, temporal_residual=False)
        self.decoder = CustomLSTM(c.d_embed, c.d_model, c.n_layers, c.dropout, temporal_residual=False)

    def _run_encoder(self, packed: PackedSequence) -> tuple[PackedSequence, State]:
        # The padded view has zeros at padding; per-row lengths pick the final state at the last real token.
        x, lengths = pad_packed_sequence(packed, batch_first=True)
        out, state = self.encoder(x, lengths=lengths)
        return pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), state

    def _run_decoder(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return self.decoder(x, state)[0]

    def _decode_with_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.decoder(x, state)

    def flops_per_token(self, src_len: int, tgt_len: int) -> float:
        """As `lstm` with 3 gates instead of 4: layer(d_in) = 2 * 3 * (d_in + d) * d; see docs/flops.md."""
        self.check_lm_src_len(src_len)
        c = self.config
        d, e = c.d_model, c.d_embed
        assert e is not None
        stack = 2.0 * GATES * (e + d) * d + (c.n_layers - 1) * 2.0 * GATES * (2 * d) * d
        decoder = stack + 2.0 * d * c.vocab_size
        if c.attention:
            decoder += LuongAttention.flops_per_token(d, src_len)
        return 3.0 * (stack * src_len / tgt_len + decoder)
