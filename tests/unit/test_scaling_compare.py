"""`pipeline scaling compare BASELINE SWEEP`: shared points matched on (arch, size, tokens within a tolerance), each
side at its best rate and averaged over seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.scaling.records.run_record import save_record
from tests.unit.test_scaling_seeds_lr import rec


def write(sweep: Path, *records) -> None:
    for r in records:
        save_record(sweep / r.run / "result.json", r)


def test_shared_points_use_the_best_rate_and_the_seed_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    old, new = tmp_path / "old", tmp_path / "new"
    write(old, rec("o-1k", n=1000, tokens=100_000, loss=4.0), rec("o-4k", n=4000, tokens=100_000, loss=3.5),
          rec("o-far", n=1000, tokens=300_000, loss=3.6))  # fmt: skip
    write(new, rec("n-lo", n=1000, tokens=102_000, loss=3.8, lr=1e-3, seed=1),
          rec("n-hi", n=1000, tokens=102_000, loss=3.0, lr=3e-3, seed=1),
          rec("n-hi2", n=1000, tokens=102_000, loss=3.4, lr=3e-3, seed=2),
          rec("n-other-budget", n=1000, tokens=200_000, loss=2.9, lr=3e-3, seed=1),
          rec("n-4k", n=4000, tokens=110_000, loss=3.5, lr=3e-3, seed=1, unigram_entropy=3.4))  # fmt: skip
    out = tmp_path / "compare.md"
    assert cli(["scaling", "compare", str(old), str(new), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Shared points") and out.read_text() == text.split("wrote ")[0]
    rows = [line for line in text.splitlines() if line.startswith("| lstm | 1,000 |")]
    # 1000 at 102k matches 100k (2 %), at the best rate 3e-3 (two seeds: 3.2); 200k matches nothing
    assert rows == ["| lstm | 1,000 | 102,000 | 4.000 | 1 | 0.002 | 3.200 | 2 | 0.003 | 0.800 |"]
    assert not any("| 4,000 |" in line for line in text.splitlines())  # 110k is 10 % from 100k: no match
    assert "| lstm | 1 | 0.800 | 1 of 1 |" in text
    assert cli(["scaling", "compare", str(old), str(new), "--tolerance", "0.1"]) == 0
    assert "| lstm | 4,000 | 110,000 | 3.500 | 1 | 0.002 | 3.500 (nothing learned) | 1 | 0.003 | 1.000 |" in (
        capsys.readouterr().out
    )


def test_bad_tolerance_and_missing_directory_are_one_line_errors(tmp_path: Path, capsys):
    assert cli(["scaling", "compare", str(tmp_path), str(tmp_path), "--tolerance", "2"]) == 2
    assert "--tolerance must be in [0, 1), got 2.0" in capsys.readouterr().err
    assert cli(["scaling", "compare", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert f"sweep directory not found: {tmp_path / 'nope'}" in capsys.readouterr().err
