"""`pipeline sweep --only PATTERN` picks runs by regular expression: a plain substring still works, and an anchor
tells `lstm-...` from `residual_lstm-...` (a plain substring cannot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main as cli
from tests.conftest import ROOT

GRID = str(ROOT / "configs/sweeps/tiny.yaml")


def planned(capsys: pytest.CaptureFixture[str], tmp_path: Path, *only: str) -> set[str]:
    argv = ["sweep", "--grid", GRID, "--out", str(tmp_path), "--dry-run"]
    assert cli([*argv, *[a for o in only for a in ("--only", o)]]) == 0
    return {
        line.split()[0]
        for line in capsys.readouterr().out.splitlines()[1:]
        if line.startswith("  ") and "-" in line
    }


def test_only_matches_a_regular_expression(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert planned(capsys, tmp_path, "lstm-d16") == {"lstm-d16-1500", "residual_lstm-d16-1500"}
    assert planned(capsys, tmp_path, "^lstm-") == {"lstm-d16-1500", "lstm-d32-1500"}
    assert planned(capsys, tmp_path, "^lstm-d16", "transformer-d32") == {
        "lstm-d16-1500",
        "transformer-d32-1500",
    }


def test_only_that_is_not_a_pattern_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli(["sweep", "--grid", GRID, "--out", str(tmp_path), "--dry-run", "--only", "lstm-(d16"])
    assert "--only: not a regular expression: 'lstm-(d16'" in capsys.readouterr().err
