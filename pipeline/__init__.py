"""pipeline: where does recurrence stop scaling? (LSTM vs residual-LSTM vs Transformer seq2seq)."""

__version__ = "0.1.0"
