"""A grid's `cells:`: data overrides crossed with archs x sizes x lrs x seeds, each cell with its own
data directory and its label in the run names; a bad cell is one error naming the grid file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.sweep.grid import SweepError, load_grid, plan_runs
from tests.conftest import ROOT


def _grid(tmp_path: Path, cells, **extra) -> Path:
    raw = yaml.safe_load((ROOT / "configs/sweeps/tiny-mqar.yaml").read_text())
    raw["base"] = [str(ROOT / b) for b in raw["base"]]
    raw.update(cells=cells, **extra)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _value(run, key: str):
    """The last override of `key` in a planned run (later overrides win)."""
    return json.loads([o for o in run.overrides if o.startswith(f"{key}=")][-1].partition("=")[2])


def test_cells_cross_archs_sizes_lrs_seeds_with_own_data_dirs(tmp_path: Path) -> None:
    cells = {"N2": {"data.mqar.n_pairs": 2}, "N4": {"data": {"mqar": {"n_pairs": 4}}},
             "L32": {"data.mqar.seq_len": 32, "data.dir": "data/shared-L32"}}  # fmt: skip
    grid = load_grid(_grid(tmp_path, cells, lrs=[1e-3, 3e-3], seeds=[1, 2]))
    assert grid.cells["N4"] == {"data.mqar.n_pairs": 4}  # nested mappings become dotted keys
    runs = plan_runs(grid, tmp_path / "sweep", measure=False)
    assert len(runs) == 3 * 2 * 2 * 2  # cells x archs x lrs x seeds (one size each)
    by_name = {r.name: r for r in runs}
    run = by_name["lstm-d16-N4-16384-lr0.003-s2"]
    assert run.cell == "N4" and _value(run, "data.mqar.n_pairs") == 4 and _value(run, "seed") == 2
    assert _value(run, "data.dir") == "data/tiny-mqar-N4"  # `<data.dir>-<label>`
    assert _value(by_name["transformer-d16-L32-16384-lr0.001-s1"], "data.dir") == "data/shared-L32"  # its own
    dirs = {_value(r, "data.dir") for r in runs}
    assert dirs == {"data/tiny-mqar-N2", "data/tiny-mqar-N4", "data/shared-L32"}


@pytest.mark.parametrize(
    ("cells", "key", "message"),
    [
        ({"N2": {"data.mqar.n_pair": 2}}, "cells.N2", "unknown config key 'data.mqar.n_pair'; did you mean "
         "'data.mqar.n_pairs'?"),
        ({"N2": {"data.mqar.n_pairs": 0}}, "cells.N2", "data.mqar.n_pairs=0 must be > 0"),
        ({"N2": {"model.n_heads": 2}}, "cells.N2", "unknown key 'model.n_heads' for model arch 'lstm'"),
        ({"N 2": {"data.mqar.n_pairs": 2}}, "cells.N 2", "a cell label is letters, digits"),
        ({"N2": {}}, "cells.N2", "a cell sets at least one key"),
        ({"N2": 2}, "cells.N2", "must be a mapping"),
        ([1, 2], "cells", "must be a mapping"),
    ],
    ids=["typo", "out-of-range", "other-arch-key", "bad-label", "empty", "not-a-mapping", "list"],
)  # fmt: skip
def test_a_bad_cell_names_the_grid_file_and_key(
    cells, key: str, message: str, tmp_path: Path, capsys
) -> None:
    path = _grid(tmp_path, cells)
    with pytest.raises(SweepError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}: key '{key}'") and message in str(err.value)
    assert cli(["sweep", "--grid", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == f"pipeline sweep: error: {err.value}"


def test_a_cell_that_breaks_the_task_layout_is_an_error_naming_the_run(tmp_path: Path) -> None:
    """L < 4N is caught when the run's config is checked, naming the grid, the run and the key."""
    grid = load_grid(_grid(tmp_path, {"N8": {"data.mqar.n_pairs": 8}}))
    with pytest.raises(SweepError, match=r"grid\.yaml: run lstm-d16-N8-16384: .*n_pairs"):
        plan_runs(grid, tmp_path / "sweep", measure=False)


def test_step_budgets_and_an_arm_restricted_to_one_cell(tmp_path: Path) -> None:
    """`step_budgets`: each run that many steps, nothing measured, `steps` in the name; an arm's `cells:` list runs
    it at those cells only (the Newton check of recall-gpu.yaml)."""
    cells = {"N2": {"data.mqar.n_pairs": 2}, "N4": {"data.mqar.n_pairs": 4}}
    path = _grid(tmp_path, cells, step_budgets=[30], evals_per_run=4)
    raw = yaml.safe_load(path.read_text())
    del raw["token_budgets"]
    raw["archs"]["lstm_newton"] = {"arch": "lstm", "model": {"recurrence": "newton"}, "cells": ["N4"],
                                   "sizes": {"d16": {"d_model": 16, "n_layers": 2}}}  # fmt: skip
    path.write_text(yaml.safe_dump(raw))
    runs = plan_runs(load_grid(path), tmp_path / "sweep", measure=False)
    names = {r.name: r for r in runs}
    assert set(names) == {"lstm-d16-N2-30steps", "lstm-d16-N4-30steps", "transformer-d16-N2-30steps",
                          "transformer-d16-N4-30steps", "lstm_newton-d16-N4-30steps"}  # fmt: skip
    assert {r.max_steps for r in runs} == {32}  # rounded up to a multiple of evals_per_run
    assert _value(names["lstm-d16-N2-30steps"], "train.max_steps") == 32
    assert not (tmp_path / "sweep" / "tokens_per_batch.json").exists()
    raw["token_budgets"] = [100]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SweepError, match="exactly one of the keys 'token_budgets' and 'step_budgets'"):
        load_grid(path)
    del raw["token_budgets"]
    raw["archs"]["lstm_newton"]["cells"] = ["N8"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        SweepError, match=r"key 'archs.lstm_newton.cells': unknown cell 'N8'; the grid's cells: N2, N4"
    ):
        load_grid(path)


def test_a_cell_with_sizes_runs_at_those_sizes_only(tmp_path: Path) -> None:
    """`cells.<label>.sizes`: a side question asked at one width (pairs versus distance at d32, say) without
    crossing it with every width; a size no arm has is an error naming the key."""
    raw = yaml.safe_load(_grid(tmp_path, {}).read_text())
    for arm in raw["archs"].values():
        arm["sizes"] = {"d16": {"d_model": 16, "n_layers": 1}, "d32": {"d_model": 32, "n_layers": 1}}
    raw["archs"]["transformer"]["model"] = {"max_len": 32, "n_heads": 2}
    raw["cells"] = {"N2": {"data.mqar.n_pairs": 2},
                    "L32N2": {"data.mqar.seq_len": 32, "data.mqar.n_pairs": 2, "sizes": ["d32"]}}  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    runs = plan_runs(load_grid(path), tmp_path / "sweep", measure=False)
    by_cell = {(r.arch, r.size, r.cell) for r in runs}
    archs = set(raw["archs"])
    assert by_cell == {(a, s, "N2") for a in archs for s in ("d16", "d32")} | {
        (a, "d32", "L32N2") for a in archs
    }
    assert all(_value(r, "data.mqar.seq_len") == 32 for r in runs if r.cell == "L32N2")
    raw["cells"]["L32N2"]["sizes"] = ["d33"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SweepError, match=r"key 'cells\.L32N2\.sizes': unknown size 'd33'; .*d16, d32"):
        load_grid(path)
