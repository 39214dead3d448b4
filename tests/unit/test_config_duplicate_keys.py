"""A YAML key given twice is an error naming the file, the key and both lines: run configs, sweep grids and cluster
files (all read by `pipeline.config.load_mapping`), checked through the loader and through each real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.config import ConfigError, load_mapping, load_yaml
from tests.conftest import ROOT

RUN_CONFIG = """\
name: dup
train:
  max_steps: 10
  log_every: 2
  max_steps: 20
"""
GRID = """\
name: tiny
base: configs/tiny/base.yaml
token_budgets: [1500]
name: again
"""
CLUSTER = """\
partition: gpu
time: "01:00:00"
partition: cpu
"""


def assert_names(message: str, path: Path, key: str, first: int, second: int) -> None:
    assert str(path) in message
    assert f"key '{key}' given twice" in message
    assert f"line {first} and line {second}" in message
    assert len(message.strip().splitlines()) == 1


def test_the_loader_names_file_dotted_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_CONFIG)
    with pytest.raises(ConfigError) as err:
        load_mapping(path, "config file")
    assert_names(str(err.value), path, "train.max_steps", 3, 5)


def test_same_key_in_different_mappings_and_distinct_keys_are_fine() -> None:
    text = "a:\n  x: 1\nb:\n  x: 2\nc: [{x: 1}, {x: 2}]\n1: one\n'1': quoted one\n"
    assert load_yaml(text) == {
        "a": {"x": 1},
        "b": {"x": 2},
        "c": [{"x": 1}, {"x": 2}],
        1: "one",
        "1": "quoted one",
    }


def test_aliases_are_walked_once_even_when_they_contain_their_anchor() -> None:
    assert load_yaml("a: &x {b: 1}\nc: *x\n") == {"a": {"b": 1}, "c": {"b": 1}}
    looped = load_yaml("&A {x: *A}\n")
    assert looped["x"] is looped


def test_a_duplicate_inside_a_list_item_names_its_index() -> None:
    with pytest.raises(Exception, match=r"key 'tasks\.1\.lr' given twice \(line 3 and line 4\)"):
        load_yaml("tasks:\n- {lr: 1}\n- lr: 1\n  lr: 2\n")


def test_pipeline_train_refuses_a_run_config_with_a_key_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_CONFIG)
    assert cli(["train", "--config", str(path), "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed: the config was not resolved with either value
    assert captured.err.startswith("pipeline train: error: ")
    assert_names(captured.err, path, "train.max_steps", 3, 5)


def test_pipeline_sweep_refuses_a_grid_with_a_key_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    assert cli(["sweep", "--grid", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeline sweep: error: ")
    assert_names(err, path, "name", 1, 4)
    assert not (tmp_path / "out").exists()


def test_pipeline_submit_refuses_a_cluster_file_with_a_key_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "configs/tiny/base.yaml")
    assert cli(["submit", "--config", config, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeline submit: error: ")
    assert_names(err, path, "partition", 1, 3)
    assert not (tmp_path / "runs").exists()


def test_every_shipped_yaml_has_unique_keys() -> None:
    """Run configs, grids and cluster examples alike: the shipped files load under the strict loader."""
    shipped = sorted((ROOT / "configs").rglob("*.yaml"))
    assert shipped
    for path in shipped:
        load_mapping(path, "shipped file")
