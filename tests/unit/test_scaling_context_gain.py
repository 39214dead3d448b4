"""The gain from distant context: band means, and a CI over sequences that excludes 0 only where the loss falls."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pipeline.scaling.analyses.context_gain import context_gain
from pipeline.scaling.records.token_losses import save_token_losses
from pipeline.scaling.report.context_gain_section import context_gain_section


def synthetic(drop: float, seed: int, n_seq: int = 60, width: int = 512) -> np.ndarray:
    """Per-token losses: 5 nats plus noise (per sequence and per token), minus `drop` from position 256 on."""
    rng = np.random.default_rng(seed)
    loss = 5.0 + rng.normal(0, 0.3, (n_seq, 1)) + rng.normal(0, 1.0, (n_seq, width))
    loss[:, 256:] -= drop
    return loss


def test_gain_is_found_where_the_loss_falls_and_not_where_it_is_flat() -> None:
    bands, gain, (lo, hi) = context_gain(synthetic(0.2, 0), n_boot=400)
    assert len(bands) == 6  # t 0, 1-3, 4-15, 16-63, 64-255, 256-511
    assert 0.1 < gain < 0.3 and lo > 0 and lo < gain < hi
    _, flat, (lo, hi) = context_gain(synthetic(0.0, 1), n_boot=400)
    assert lo < 0 < hi and abs(flat) < 0.1


def test_section_averages_seeds_per_sequence_and_skips_short_sequences(tmp_path: Path) -> None:
    records = []
    for name, arch, drop, seed in (("t-s1", "transformer", 0.2, 1), ("t-s2", "transformer", 0.2, 2),
                                   ("l-s1", "lstm", 0.0, 3)):  # fmt: skip
        save_token_losses(tmp_path / name, synthetic(drop, seed))
        records.append(SimpleNamespace(run=name, arch=arch, non_embedding_params=1000))
    save_token_losses(
        tmp_path / "short", synthetic(0.0, 4, width=300)
    )  # p256 passages: no 256-token last band
    records.append(SimpleNamespace(run="short", arch="minlstm", non_embedding_params=10))
    md = context_gain_section(tmp_path, records)
    rows = {
        line.split(" | ")[0].strip("| "): line for line in md if line.startswith("| ") and "---" not in line
    }
    assert set(rows) == {"arch", "lstm", "transformer"}
    assert rows["transformer"].split(" | ")[2] == "2"  # two seeds averaged
    assert rows["transformer"].split(" | ")[-1].startswith("+0.")
    assert context_gain_section(tmp_path, records[-1:]) == []
