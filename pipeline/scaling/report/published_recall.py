"""Published MQAR accuracies to print beside a sweep's own, where its cell matches: Zoology (Arora et al. 2023)
Fig. 2, read off the plot (about +-0.03; /work/shared/notes/recall-anchors.md). Labelled as published wherever
shown; never used in a fit.

Zoology has no LSTM: beside a recurrent architecture the report shows RWKV, the gated recurrence closest to an
LSTM in that figure, and beside the Transformer Zoology's attention.
"""

from __future__ import annotations

ZOOLOGY_V = 8192
ZOOLOGY_WIDTHS = (64, 128, 256, 512)
SOURCE = "Zoology (Arora et al. 2023) Fig. 2, read off the plot (±0.03)"
# (L, N) -> model -> accuracy at d = 64/128/256/512
ZOOLOGY_FIG2: dict[tuple[int, int], dict[str, tuple[float, float, float, float]]] = {
    (64, 4): {"attention": (0.98, 0.98, 0.98, 0.98), "RWKV": (0.75, 0.92, 0.95, 0.97)},
    (128, 8): {"attention": (0.98, 0.98, 0.98, 0.98), "RWKV": (0.18, 0.49, 0.75, 0.91)},
    (256, 16): {"attention": (0.98, 0.98, 0.98, 0.98), "RWKV": (0.06, 0.07, 0.66, 0.78)},
    (512, 64): {"attention": (0.98, 0.98, 0.98, 0.98), "RWKV": (0.02, 0.03, 0.16, 0.37)},
}


def zoology_match(arch: str, vocab_size: int, seq_len: int, n_pairs: int, d: int) -> tuple[str, float] | None:
    """(Zoology model, its published accuracy) for this cell, or None when V, (L, N) or d is not one of Fig. 2's."""
    row = ZOOLOGY_FIG2.get((seq_len, n_pairs))
    if vocab_size != ZOOLOGY_V or row is None or d not in ZOOLOGY_WIDTHS:
        return None
    model = "attention" if arch == "transformer" else "RWKV"
    return model, row[model][ZOOLOGY_WIDTHS.index(d)]
