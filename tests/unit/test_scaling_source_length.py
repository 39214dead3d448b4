"""Loss by source length from per-token validation losses: bucket means with CIs, and the report section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.scaling.analyses.source_length import bucket_losses
from pipeline.scaling.records.run_record import RunRecord
from pipeline.scaling.records.token_losses import save_token_losses
from pipeline.scaling.report.source_length_section import source_length_section


def synthetic(rise: float, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose per-token loss is 2 + rise * log2(source length) + noise; targets of 12 tokens."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(1, 65, size=n)
    loss = 2.0 + rise * np.log2(src_len)[:, None] + rng.normal(0, 0.3, size=(n, 12))
    loss[:, 10:] = np.nan  # padding
    return loss, src_len


def test_buckets_recover_a_loss_that_rises_with_source_length() -> None:
    loss, src_len = synthetic(rise=0.5)
    rows = bucket_losses(loss, src_len)
    assert [r[0] for r in rows][:2] == [(0, 8), (8, 16)] and sum(r[3] for r in rows) == len(src_len)
    means = [r[1] for r in rows]
    assert means == sorted(means) and means[-1] - means[0] > 1.0
    for _edges, mean, (a, b), _ in rows:
        assert a < mean < b
    flat = [r[1] for r in bucket_losses(*synthetic(rise=0.0))]
    assert max(flat) - min(flat) < 0.15  # no rise: the buckets agree within their noise


def test_section_draws_each_archs_largest_run(tmp_path: Path) -> None:
    records = []
    for arch, rise, compute in (("lstm", 0.4, 2e12), ("lstm", 0.0, 1e12), ("transformer", 0.05, 2e12),
                                ("transformer_p256", 0.05, 2e12)):  # fmt: skip
        run = f"{arch}-{int(compute)}"
        loss, src_len = synthetic(rise)
        save_token_losses(tmp_path / run, loss, src_len=src_len)
        model = (
            {"attention": False} if arch == "lstm" else {"arch": "transformer"}
        )  # an arm label: no attention key
        records.append(RunRecord(run=run, arch=arch, params=10, non_embedding_params=5, flops_per_token=compute / 1e6,
                                 tokens=1_000_000, compute=compute, epochs=1.0, final_valid_loss=3.0,
                                 best_valid_loss=3.0, config={"model": model}))  # fmt: skip
    lines = source_length_section(tmp_path, records, tmp_path)
    text = "\n".join(lines)
    assert "## Loss and BLEU by source length" in text and (tmp_path / "loss_by_source_length.pdf").is_file()
    assert f"lstm-{int(2e12)}" in text and f"lstm-{int(1e12)}" not in text  # the larger-compute lstm run
    assert "| transformer | transformer-" in text and "| False |" in text
    assert f"| transformer_p256 | transformer_p256-{int(2e12)} | True |" in text  # a Transformer arm attends
    assert (tmp_path / "loss_by_source_length.png").stat().st_size > 1000
    assert source_length_section(tmp_path / "nowhere", records, tmp_path) == []


@pytest.mark.parametrize("n", [0, 5])
def test_too_few_pairs_give_no_bucket(n: int) -> None:
    loss, src_len = synthetic(0.2, n=max(n, 1))
    assert bucket_losses(loss[:n], src_len[:n]) == []
