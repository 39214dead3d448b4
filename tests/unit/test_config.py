"""Config files, overrides and the errors a user sees for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import (
    ConfigError,
    ConfigWarning,
    config_from_dict,
    config_keys,
    describe_keys,
    format_config,
    load_config,
    load_mapping,
    reject_unknown,
    to_dict,
)
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


TINY_LSTM = [ROOT / "configs/tiny/base.yaml", ROOT / "configs/tiny/lstm.yaml"]

# Out-of-range values that, unchecked, train a NaN model, start part-way, are silently "off", or reach torch
OUT_OF_RANGE_VALUES = [
    "optim.lr=true", "optim.lr=.inf", "optim.lr=.nan", "optim.weight_decay=.nan", "optim.min_lr_ratio=.nan",
    "optim.min_lr_ratio=-1", "optim.warmup_steps=-5", "optim.grad_clip=-1", "optim.label_smoothing=-0.1",
    "optim.label_smoothing=1.5", "train.log_every=0", "train.val_batches=-1", "train.keep_checkpoints=-1",
    "train.ckpt_every=-1", "data.batch_tokens=1e400", "model.init_range=.inf", "train.max_steps=true",
    "train.max_steps=2.5", "optim.betas=[0.9]", "model.init_range=true",
]  # fmt: skip


@pytest.mark.parametrize("override", OUT_OF_RANGE_VALUES)
def test_out_of_range_value_is_one_line_naming_key_and_value(override: str) -> None:
    key, raw = override.split("=")
    with pytest.raises(ConfigError) as info:
        load_config(TINY_LSTM, [override])
    message = str(info.value)
    shown = {"true": "True", ".inf": "inf", ".nan": "nan", "-1": "-1"}.get(raw, raw)
    assert key in message and shown in message and "\n" not in message, message


def test_shipped_configs_load_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    for path in CONFIG_FILES:
        if path.parent.name == "tiny" and path.name != "sutskever2014.yaml":
            load_config([ROOT / "configs/tiny/base.yaml", path])
    assert not [w for w in recwarn if issubclass(w.category, ConfigWarning)]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["train.zero_stage=3"], r"train.zero_stage=3 does nothing without train.strategy=deepspeed"),
        (["train.offload_optimizer=true"], r"train.offload_optimizer=True does nothing without"),
        (
            ["optim.warmup_steps=10"],
            r"optim.warmup_steps=10 >= train.max_steps=6: the run ends inside the warmup",
        ),
        (
            ["train.val_every=50"],
            r"train.val_every=50 > train.max_steps=6: the run validates once, at its end",
        ),
        (["optim.schedule=halving", "optim.warmup_steps=0"], r"halve_every=0 never halves"),
        (["optim.momentum=0.9"], r"optim.momentum=0.9 does nothing with optim.name=adamw"),
        (["train.eval_stride=4"], r"train.eval_stride=4 does nothing without train.eval_contexts"),
        (["train.eval_windows=9"], r"train.eval_windows=9 does nothing without train.eval_contexts"),
    ],
)
def test_contradiction_is_a_warning_naming_the_keys(overrides: list[str], match: str) -> None:
    with pytest.warns(ConfigWarning, match=match):
        cfg = load_config(TINY_LSTM, overrides)
    assert cfg.train.max_steps == 6  # still loads: it runs, just not as probably meant


def test_deepspeed_config_file_is_checked_up_front(tmp_path: Path) -> None:
    missing = tmp_path / "ds.json"
    with pytest.raises(ConfigError, match=r"train.deepspeed_config not found: .*ds.json"):
        load_config(TINY_LSTM, ["train.strategy=deepspeed", f"train.deepspeed_config={missing}"])
    missing.write_text('{"zero_optimization": ')
    with pytest.raises(ConfigError, match=r"ds.json is not valid JSON \(line 1, column 23\)"):
        load_config(TINY_LSTM, ["train.strategy=deepspeed", f"train.deepspeed_config={missing}"])
    missing.write_text('{"zero_optimization": {"reduce_bucket_size": 123}}')
    cfg = load_config(TINY_LSTM, ["train.strategy=deepspeed", f"train.deepspeed_config={missing}"])
    assert cfg.train.deepspeed_config == str(missing)
    with pytest.warns(ConfigWarning, match=r"train.deepspeed_config=.* does nothing without"):
        load_config(TINY_LSTM, [f"train.deepspeed_config={missing}"])


def test_gpu_settings_without_a_gpu_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for overrides in (["train.accelerator=gpu"], ["train.accelerator=cuda"],
                      ["train.accelerator=auto", "train.precision=16-mixed"]):  # fmt: skip
        with pytest.raises(ConfigError, match=r"needs a GPU but this machine has none"):
            load_config(TINY_LSTM, overrides)
        assert load_config(TINY_LSTM, overrides, check_gpu=False)  # planned here, trained on a GPU node
    with pytest.raises(ConfigError, match=r"train.precision=16-mixed needs a GPU but train.accelerator=cpu"):
        load_config(TINY_LSTM, ["train.precision=16-mixed"], check_gpu=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert load_config(TINY_LSTM, ["train.accelerator=gpu"]).train.accelerator == "gpu"
    with pytest.raises(ConfigError, match=r"train.devices=2 but this machine has 1 GPU"):
        load_config(TINY_LSTM, ["train.accelerator=gpu", "train.devices=2"])


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", r"bad.yaml is not UTF-8 text"),
        ("train:\n  max_steps: 3\n".encode("utf-16"), r"bad.yaml is not UTF-8 text"),
        (b"train:\n  max_steps: [3\n", r"bad.yaml is not valid YAML: .*\(line \d+, column \d+\)"),
        (b"train: {max_steps: 3}\n\x00\x01", r"bad.yaml is not valid YAML"),
        (b"- 1\n- 2\n", r"bad.yaml: top level must be a mapping of keys, got list"),
        (b"train: 5\n", r"bad.yaml: key 'train' must be a mapping, got 5"),
    ],
)
def test_unreadable_config_file_is_one_line_naming_it(tmp_path: Path, content: bytes, match: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_config([bad])
    assert "\n" not in str(info.value)


def test_directory_and_override_yaml_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file: .* is a directory, not a file"):
        load_config([tmp_path])
    with pytest.raises(ConfigError, match=r"override 'train.max_steps=\[': value is not valid YAML") as info:
        load_config(TINY_LSTM, ["train.max_steps=["])
    assert "\n" not in str(info.value)
    with pytest.raises(
        ConfigError, match=r"override 'train.max_stps=3': unknown key 'train.max_stps'; did you"
    ):
        load_config(TINY_LSTM, ["train.max_stps=3"])


def test_model_keys_set_by_the_data_or_misspelt_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"model.vocab_size is set by data.vocab_size"):
        load_config(TINY_LSTM, ["model.vocab_size=100"])
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.d_modle' for model arch 'lstm'; did you mean 'model.d_model'"
    ):
        load_config(TINY_LSTM, ["model.d_modle=8"])


def test_load_mapping_and_reject_unknown_serve_any_file_type(tmp_path: Path) -> None:
    class GridError(ValueError):
        pass

    (tmp_path / "a.json").write_text('{"stage": 2}')
    (tmp_path / "a.yaml").write_text("stage: 2\n")
    (tmp_path / "empty.yaml").write_text("")
    assert load_mapping(tmp_path / "a.json", "x") == load_mapping(tmp_path / "a.yaml", "x") == {"stage": 2}
    assert load_mapping(tmp_path / "empty.yaml", "x") == {}
    with pytest.raises(ConfigError, match=r"grid file not found: .*nope.yaml"):
        load_mapping(tmp_path / "nope.yaml", "grid file")
    with pytest.raises(GridError, match=r"g.yaml: unknown key 'arches'; did you mean 'archs'\?"):
        reject_unknown({"arches": {}}, ["archs", "base", "token_budgets"], "g.yaml", error=GridError)
    with pytest.raises(ConfigError, match=r"x: unknown key 'zzz'; valid keys: archs, base"):
        reject_unknown({"zzz": 1}, ["archs", "base"], "x")


def test_describe_keys_lists_every_key_with_type_default_and_range() -> None:
    text = describe_keys()
    lines = {line.split()[0]: line for line in text.splitlines()}
    for spec in config_keys():
        assert spec.name in lines and spec.help and spec.help in lines[spec.name], spec.name
    assert lines["optim.lr"].split()[1:3] == ["float", "0.001"] and lines["optim.lr"].endswith("[> 0]")
    assert "[one of adamw, sgd]" in lines["optim.name"] and "[in [0, 1)]" in lines["optim.label_smoothing"]


def test_format_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(TINY_LSTM, ["optim.betas=[0.8, 0.9]", "train.max_steps=5"])
    printed = tmp_path / "printed.yaml"
    printed.write_text(format_config(cfg))
    assert to_dict(load_config([printed])) == to_dict(cfg)
    assert to_dict(config_from_dict(to_dict(cfg))) == to_dict(cfg)
    with pytest.raises(ConfigError, match=r"saved config: optim.lr=nan must be a finite number"):
        config_from_dict({**to_dict(cfg), "optim": {"lr": float("nan")}})


def test_cross_key_and_model_errors_say_where_each_key_was_set(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model: {init_range: .inf}\n")
    with pytest.raises(ConfigError, match=r"model.init_range=inf must be a finite number .*overlay.yaml"):
        load_config([*TINY_LSTM, overlay])
    with pytest.raises(ConfigError) as info:
        load_config(TINY_LSTM, ["train.precision=16-mixed"])
    assert "train.accelerator: " + str(ROOT / "configs/tiny/base.yaml") in str(info.value)
    assert "train.precision: override 'train.precision=16-mixed'" in str(info.value)
