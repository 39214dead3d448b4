"""Every shipped grid (`configs/sweeps/*.yaml`, found by glob: a new grid is covered as it lands) is read and
dry-run planned, and a grid's per-size model keys and `set` overrides are checked against the run-config schema
when the file is read: a bad key is one error naming the grid file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.sweep.grid import SweepError, _budget_label, load_grid
from tests.conftest import ROOT

GRIDS = sorted((ROOT / "configs/sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_shipped_grid_loads_and_dry_run_plans(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repo root: the grids' repo-relative base paths must still resolve
    grid = load_grid(path)
    sweep = tmp_path / "sweep"
    # planning builds and checks every run's full config (base files + set + arm + size + seed/rate), no data
    assert cli(["sweep", "--grid", str(path), "--out", str(sweep), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()[1:]
             if line.startswith("  ") and ("tokens" in line or "step budget" in line)]  # fmt: skip
    assert out.startswith(f"sweep {sweep}: {len(lines)} runs") and lines
    names = [line[0] for line in lines]
    assert len(set(names)) == len(names)
    # every (arm, size, cell, budget) point of the file is planned, under its own name
    raw = yaml.safe_load(path.read_text())
    cells = [f"-{c}" for c in raw.get("cells") or {}] or [""]  # an arm's `cells:` runs at those only
    unit = "steps" if "step_budgets" in raw else ""
    only = {f"-{c}": keys.get("sizes") for c, keys in (raw.get("cells") or {}).items()}  # a cell's `sizes:`
    points = {f"{arm}-{size}{c}-{_budget_label(b)}{unit}" for arm, spec in raw["archs"].items()
              for size in spec["sizes"] for c in ([f"-{x}" for x in spec.get("cells", [])] or cells)
              if only.get(c) is None or size in only[c]
              for b in raw.get("token_budgets") or raw["step_budgets"]}  # fmt: skip
    assert {p for p in points if any(n == p or n.startswith(f"{p}-") for n in names)} == points
    assert grid.archs.keys() == raw["archs"].keys()
    assert len(names) >= len(points)
    assert not (sweep / "tokens_per_batch.json").exists()  # a dry run measured nothing


def _tiny_grid(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    raw["base"] = str(ROOT / raw["base"])
    edit(raw)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda g: g["archs"]["lstm"]["sizes"]["d16"].update(d_modle=16), "archs.lstm.sizes.d16",
         "unknown key 'model.d_modle' for model arch 'lstm'; did you mean 'model.d_model'?"),
        (lambda g: g["archs"]["transformer"]["sizes"]["d32"].update(n_heads="two"), "archs.transformer.sizes.d32",
         "model.n_heads='two' must be a number"),
        (lambda g: g["archs"]["lstm"]["model"].update(atention=True), "archs.lstm.model",
         "unknown key 'model.atention'"),
        (lambda g: g["archs"]["lstm"]["sizes"]["d16"].update(n_heads=2), "archs.lstm.sizes.d16",
         "unknown key 'model.n_heads' for model arch 'lstm'"),
    ],
    ids=["size-typo", "size-bad-value", "arm-model-typo", "other-arch-key"],
)  # fmt: skip
def test_a_bad_per_size_model_key_names_the_grid_file_and_key(
    edit, key: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tiny_grid(tmp_path, edit)
    with pytest.raises(SweepError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}: key '{key}': ") and message in str(err.value)
    assert cli(["sweep", "--grid", str(path), "--dry-run"]) == 2  # the command: one line, exit 2
    assert capsys.readouterr().err.strip() == f"pipeline sweep: error: {err.value}"


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda g: g["set"].update({"train.max_stps": 3}), "set",
         "unknown config key 'train.max_stps'; did you mean 'train.max_steps'?"),
        (lambda g: g["set"].update({"train": {"val_evry": 3}}), "set", "unknown config key 'train.val_evry'"),
        (lambda g: g["set"].update({"bogus": 1}), "set", "unknown config key 'bogus'"),
        (lambda g: g["set"].update({"train.max_steps": -3}), "set", "train.max_steps=-3 must be > 0"),
        (lambda g: g["set"].update({"optim.lr": "fast"}), "set", "key 'optim.lr': cannot read 'fast' as float"),
        (lambda g: g["set"].update({"model.n_heads": 2}), "set", "unknown key 'model.n_heads' for model arch 'lstm'"),
        (lambda g: g["archs"]["lstm"].update(set={"optim.lrr": 1e-3}), "archs.lstm.set",
         "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    ],
    ids=["dotted-typo", "nested-typo", "no-such-key", "out-of-range", "bad-type", "model-key", "arm-set-typo"],
)  # fmt: skip
def test_a_bad_set_override_names_the_grid_file_and_key(edit, key: str, message: str, tmp_path: Path) -> None:
    path = _tiny_grid(tmp_path, edit)
    with pytest.raises(SweepError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}: key '{key}'") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_good_set_forms_are_accepted(tmp_path: Path) -> None:
    """Dotted keys, nested sections and `model.*` keys that every arm's architecture has all pass."""
    sets = {"train.max_steps": 4, "optim": {"lr": 1e-3}, "model.dropout": 0.0, "logging.wandb": False}
    grid = load_grid(_tiny_grid(tmp_path, lambda g: g["set"].update(sets)))
    assert grid.overrides["optim"] == {"lr": 1e-3} and grid.overrides["model.dropout"] == 0.0


def test_every_shipped_yaml_is_read_by_a_test() -> None:
    """configs/**.yaml: grids are planned above, run configs parsed by tests/unit/test_config.py (base files
    through the overlays beside them), and the cluster file loads; a YAML of a new kind must join one of these."""
    from pipeline.slurm.render import load_cluster_defaults
    from tests.unit.test_config import CONFIG_FILES

    clusters = sorted((ROOT / "configs/cluster").glob("*.yaml"))
    for path in clusters:
        assert load_cluster_defaults(path).partition
    bases = {
        p for p in (ROOT / "configs").rglob("base.yaml") if set(p.parent.glob("*.yaml")) & set(CONFIG_FILES)
    }
    covered = {*GRIDS, *CONFIG_FILES, *bases, *clusters}
    assert sorted(set((ROOT / "configs").rglob("*.yaml")) - covered) == []


def test_rates_written_without_a_dot_are_numbers(tmp_path: Path) -> None:
    """`lrs: [1e-3, 2e-3]` (YAML 1.2 floats; YAML 1.1, PyYAML's, reads them as strings) plans those rates; a
    quoted '1e-3' stays a string and is refused naming the key."""
    path = _tiny_grid(tmp_path, lambda g: g["archs"]["lstm"].update(lrs=["RATES"]))
    path.write_text(path.read_text().replace("- RATES", "- 1e-3\n    - 2E-3"))
    assert load_grid(path).archs["lstm"]["lrs"] == [0.001, 0.002]
    path.write_text(path.read_text().replace("- 1e-3", "- '1e-3'"))
    with pytest.raises(
        SweepError, match=r"archs.lstm'.lrs holds '1e-3'; expected a list of positive numbers"
    ):
        load_grid(path)
