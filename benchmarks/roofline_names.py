"""The roofline suite's architecture and size names, without torch: `benchmarks.run` offers them as choices
before it sets the thread count and imports torch (benchmarks/roofline_points.py says what each size is)."""

from __future__ import annotations

ARCHS = ("lstm", "residual_lstm", "transformer", "lstm_no_cell_residual", "minlstm", "lstm_newton")
RECALL = {"d_models": (64, 128), "seq_lens": (64, 256), "rows": 64, "vocab_size": 256, "n_layers": 2}
RECALL_POINTS = tuple(
    f"recall-d{d}-L{n}" for d, n in zip(RECALL["d_models"], RECALL["seq_lens"], strict=True)
)
SIZE_NAMES = ("tiny", "demo", "recall", "mqar")
SIZE_CHOICES = SIZE_NAMES + RECALL_POINTS
