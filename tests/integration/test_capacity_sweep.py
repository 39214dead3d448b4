"""End to end: the shipped tiny MQAR grid with `cells:` (2 N cells x 2 architectures) through
`pipeline sweep`, then `pipeline scaling report` on it: each cell's data generated into its own directory, the
runs named by cell, and the report a "Capacity law" section with its figures (seconds on one CPU core)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from tests.conftest import ROOT


def test_tiny_mqar_sweep_with_cells_then_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the grid's relative data.dir lands here
    sweep = tmp_path / "sweep"
    assert cli(["sweep", "--grid", str(ROOT / "configs/sweeps/tiny-mqar.yaml"), "--out", str(sweep)]) == 0
    names = {"lstm-d16-N2-16384", "lstm-d16-N4-16384", "transformer-d16-N2-16384", "transformer-d16-N4-16384"}
    assert {p.name for p in sweep.iterdir() if (p / "result.json").is_file()} == names
    assert {p.name for p in (tmp_path / "data").iterdir()} == {"tiny-mqar-N2", "tiny-mqar-N4"}
    record = json.loads((sweep / "lstm-d16-N4-16384" / "result.json").read_text())
    assert record["answer_metrics"]["N"] == 4 and record["config"]["data"]["dir"] == "data/tiny-mqar-N4"
    plan = json.loads((sweep / "plan.json").read_text())["runs"]
    assert {r["cell"] for r in plan} == {"N2", "N4"}

    assert cli(["scaling", "report", str(sweep), "--n-boot", "20"]) == 0
    text = (sweep / "report.md").read_text()
    assert "## Capacity law" in text and "Text-task sections skipped" in text
    assert "(L, N) cells: (16, 2), (16, 4)" in text and "### lstm" in text and "### transformer" in text
    for name in ("capacity_accuracy", "capacity_nstar", "capacity_state_bits"):
        assert (sweep / f"{name}.png").stat().st_size > 0 and (sweep / f"{name}.pdf").stat().st_size > 0
    cap = json.loads((sweep / "fit.json").read_text())["capacity"]
    assert set(cap["archs"]) == {"lstm", "transformer"} and cap["V"] == 32 and cap["chance"] == 1 / 16
    widths = cap["archs"]["lstm"]["widths"]["16"]
    assert (
        set(widths["accuracy"]) == {"2", "4"}
        and widths["state_floats"] == record["answer_metrics"]["state_floats"]
    )
