"""GNMT-style (Wu et al. 2016) residual LSTM encoder-decoder.

Stacks of single-layer `nn.LSTM`s (each still a fused cuDNN call over the whole sequence) so a residual
connection can be added between layers: from layer `residual_from` (0-based) up, a layer's output is
LSTM_i(x_i) + x_i. GNMT starts residuals at the third layer (residual_from=2). Kept from GNMT: the residuals.
Simplified: a unidirectional first encoder layer (so the final state can seed the decoder, as in the plain
LSTM) and attention on the top decoder layer only (Luong-style, as in `lstm`), which keeps training free of a
Python loop over time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from pipeline.models.configs import ResidualLSTMConfig
from pipeline.models.lstm import LSTMSeq2Seq, State, sequential_lstm


class ResidualLSTMSeq2Seq(LSTMSeq2Seq):
    """Same embeddings, attention and output as `LSTMSeq2Seq`; only the layer stacks differ."""

    config: ResidualLSTMConfig

    def _build_stacks(self) -> None:
        c = self.config
        assert c.d_embed is not None

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                self._lstm(c.d_embed if i == 0 else c.d_model, c.d_model, batch_first=True)
                for i in range(c.n_layers)
            )

        self.encoder = stack()
        self.decoder = stack()

    def _layer_output(self, i: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual add from `residual_from` up; dropout between layers like nn.LSTM's `dropout`."""
        if i >= self.config.residual_from:
            y = y + x
        return self.drop(y) if i < self.config.n_layers - 1 else y

    def _run_encoder(self, packed: PackedSequence) -> tuple[PackedSequence, State]:
        hs, cs = [], []
        x = packed
        for i, lstm in enumerate(self.encoder):
            y, (h, c) = lstm(x)
            # Input and output share one packing layout, so the residual adds on the packed data directly.
            # (A new PackedSequence, not y._replace: torch.compile's dynamo traces _replace to an empty tuple.)
            x = PackedSequence(self._layer_output(i, x.data, y.data), *y[1:])
            hs.append(h)
            cs.append(c)
        return x, (torch.cat(hs), torch.cat(cs))

    def _run_decoder(self, x: torch.Tensor, state: State) -> torch.Tensor:
        h, c = state
        for i, lstm in enumerate(self.decoder):
            y, _ = lstm(x, (h[i : i + 1].contiguous(), c[i : i + 1].contiguous()))
            x = self._layer_output(i, x, y)
        return x

    def _decode_with_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """`_run_decoder` that also returns each layer's final (h, c): the state incremental decoding carries."""
        h, c = state
        hs, cs = [], []
        for i, lstm in enumerate(self.decoder):
            y, (h_i, c_i) = sequential_lstm(lstm, x, (h[i : i + 1].contiguous(), c[i : i + 1].contiguous()))
            x = self._layer_output(i, x, y)
            hs.append(h_i)
            cs.append(c_i)
        return x, (torch.cat(hs), torch.cat(cs))
