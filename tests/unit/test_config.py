"""Config files, overrides and the errors a user sees for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, to_dict
from tests.conftest import ROOT

# run configs (base.yaml files are loaded through the overlays that build on them)
CONFIG_FILES = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml")
    if p.name != "base.yaml" and not {"sweeps", "cluster"} & set(p.relative_to(ROOT).parts)
)  # fmt: skip


def test_overrides_win_over_files_and_are_typed() -> None:
    cfg = load_config(
        [ROOT / "configs/tiny/base.yaml", ROOT / "configs/tiny/lstm.yaml"],
        ["train.max_steps=17", "optim.lr=0.5", "model.d_model=48", "logging.wandb=false"],
    )
    assert cfg.train.max_steps == 17 and isinstance(cfg.train.max_steps, int)
    assert cfg.optim.lr == 0.5
    assert cfg.model["d_model"] == 48 and cfg.model["arch"] == "lstm"
    assert cfg.logging.wandb is False


def test_unknown_key_is_named_with_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_step: 10\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml: unknown key 'train.max_step'; did you mean 'train.max_steps'"
    ):
        load_config([bad])


def test_unknown_arch_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model arch 'gru'.*lstm.*transformer"):
        load_config([], ["model.arch=gru"])


def test_unknown_model_key_names_key_and_arch() -> None:
    with pytest.raises(ConfigError, match=r"n_heads.*lstm"):
        load_config([ROOT / "configs/tiny/lstm.yaml"], ["model.n_heads=4"])


def test_missing_file_and_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config([tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match=r"train.precision='fp8' is not one of"):
        load_config([ROOT / "configs/tiny/lstm.yaml"], ["train.precision=fp8"])
    with pytest.raises(ConfigError, match=r"key 'train.max_steps': cannot read 'ten' as int"):
        load_config([ROOT / "configs/tiny/lstm.yaml"], ["train.max_steps=ten"])


def test_switching_arch_drops_other_arch_keys() -> None:
    cfg = load_config(
        [ROOT / "configs/tiny/lstm.yaml"], ["model={arch: transformer, d_model: 32, n_layers: 1, n_heads: 2}"]
    )
    assert "attention" not in cfg.model and cfg.model["arch"] == "transformer"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_parses(path: Path) -> None:
    """Each shipped YAML loads on top of the defaults (and over its base file where it is an overlay)."""
    base = [path.parent / "base.yaml"] if (path.parent / "base.yaml").exists() else []
    if path.name == "sutskever2014.yaml" and path.parent.name == "tiny":
        base = [ROOT / "configs/tiny/base.yaml", ROOT / "configs/experiment/sutskever2014.yaml"]
    cfg = load_config([*base, path])
    assert to_dict(cfg)["model"]["arch"]


def test_sutskever_recipe_matches_paper() -> None:
    cfg = load_config([ROOT / "configs/experiment/sutskever2014.yaml"])
    m = cfg.model
    assert (m["arch"], m["n_layers"], m["d_model"], m["d_embed"]) == ("lstm", 4, 1000, 1000)
    assert m["reverse_source"] is True and m["attention"] is False and m["init_range"] == 0.08
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.schedule, cfg.optim.grad_clip) == (
        "sgd",
        0.7,
        "halving",
        5.0,
    )
