"""`pipeline demo` runs the whole loop (sweep -> records -> fits -> report -> summary, showcase beside it), here
on the tiny grid and a tiny showcase so that it takes seconds, from a directory outside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.training.wandb_files import offline_run_files
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_demo_runs_the_loop_and_writes_one_summary(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    grid["set"] = {**grid["set"], "data.dir": str(tiny_data), "logging.wandb": True}
    grid["archs"] = {a: {**s, "sizes": dict(list(s["sizes"].items())[:2])} for a, s in grid["archs"].items()}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    monkeypatch.chdir(tmp_path)  # not the repo root: shipped config paths must still resolve
    argv = ["demo", "--out", "demo", "--grid", "grid.yaml", "--n-boot", "10",
            "--showcase", "configs/tiny/base.yaml", "--showcase", "configs/tiny/transformer.yaml",
            f"data.dir={tiny_data}", "logging.wandb=true", "train.bleu_samples=4"]  # fmt: skip
    assert cli(argv) == 0
    out = tmp_path / "demo"
    summary = (out / "summary.md").read_text()
    # Seconds of training on the tiny slice learn no more than token frequencies: the demo says so instead of
    # fitting (tests/integration/test_sweep.py covers the fits on the same kind of records).
    assert "No scaling law was fitted" in summary and "every run learned nothing" in summary
    for arch in ("lstm", "residual_lstm", "transformer"):
        assert f"| {arch}-d16-1500 |" in summary and f"| {arch}-d32-1500 |" in summary
    assert "| source (English) | model (French) | reference |" in summary
    assert "## The showcase: transformer trained for 6 steps" in summary
    runs = [p.parent for p in (out / "sweep").glob("*/result.json")]
    assert len(runs) == 6
    for run_dir in [*runs, out / "showcase"]:  # one offline W&B run per model
        assert len(offline_run_files(run_dir)) == 1, run_dir
