"""Planning a grid checks every run's config before its length is set; a warning about the base config's
`max_steps` would be about a length no run has, so the planner keeps it to itself (the run warns at train time)."""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from pipeline.sweep.grid import load_grid, plan_runs
from tests.conftest import ROOT


def test_planning_does_not_warn_about_the_base_configs_length(tmp_path: Path) -> None:
    grid = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    grid["base"] = str(ROOT / grid["base"])
    grid["set"]["train.grad_reach_every"] = 10**6  # past the base max_steps: ConfigWarning if checked as is
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = plan_runs(load_grid(path), tmp_path / "sweep", measure=False)
    assert len(runs) == 6 and not [w for w in caught if "grad_reach_every" in str(w.message)]
