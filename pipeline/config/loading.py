"""Reading a run config: defaults <- YAML files merged left to right <- dotted `key=value` overrides, every key typed
and range-checked as it is merged, then the checks across keys and against this machine. The result is validated
once and passed down as the `RunConfig` object (the trainer, the LightningModule and the model builder take it as
is); `config_from_dict` is for a config saved in a checkpoint or run directory, read back once.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.checks import check_cross_keys, check_machine, check_position_table, contradictions
from pipeline.config.errors import ConfigError, ConfigWarning
from pipeline.config.keys import (
    KeySpec,
    check_ranges,
    check_value,
    coerce,
    describe,
    key_specs,
    reject_unknown,
    type_hints,
)
from pipeline.config.memory import MEMORY_TASKS, check_memory
from pipeline.config.model_section import model_spec
from pipeline.config.schema import RunConfig
from pipeline.config.yaml_files import load_mapping, load_yaml, shipped_path, yaml_problem


def _merge_section(
    obj: Any, values: dict[str, Any], prefix: str, source: str, set_by: dict[str, str] | None = None
) -> None:
    """Merge `values` into the dataclass `obj`, typing and range-checking each key; `set_by[key] = source`."""
    set_by = {} if set_by is None else set_by
    hints = type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    reject_unknown(values, fields, source, prefix)
    for name, value in values.items():
        where = f"{source}: key '{prefix}{name}'"
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping, got {value!r}")
            _merge_section(current, value, f"{prefix}{name}.", source, set_by)
        elif name == "model" and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping, got {value!r}")
            if "arch" in value and value["arch"] != current.get("arch"):
                current = {}  # switching architecture drops the other architecture's keys
            setattr(obj, name, {**current, **value})
            set_by.update({f"model.{k}": source for k in value})
        else:
            typed = coerce(value, hints[name], where)
            if typed is not None:
                check_value(fields[name].metadata["bounds"], typed, f"{prefix}{name}", source)
            setattr(obj, name, typed)
            set_by[f"{prefix}{name}"] = source


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """`train.max_steps=10` -> ("train.max_steps", 10); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key_, raw = text.split("=", 1)
    if not key_.strip() or any(not part for part in key_.strip().split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        return key_.strip(), load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {yaml_problem(err)}") from err


def config_from_dict(values: dict[str, Any], source: str = "saved config") -> RunConfig:
    """Rebuild a RunConfig from a dict (a checkpoint's or run dir's saved config), validated like a YAML file."""
    cfg = RunConfig()
    _merge_section(cfg, values, "", source)
    validate(cfg)
    return cfg


def load_config(
    paths: list[str | Path] | None = None, overrides: list[str] | None = None, *, check_gpu: bool = True
) -> RunConfig:
    """Defaults <- each YAML in order <- dotted overrides, then every check (`validate`, `check_machine`).

    Contradictions that still run (a key unused in this mode, a warmup longer than the run) are `ConfigWarning`s.
    `check_gpu=False` where the run is planned here and trained elsewhere (sweep planning, `pipeline submit`).
    """
    cfg, set_by = RunConfig(), {}
    for path in paths or []:
        _merge_section(cfg, load_mapping(shipped_path(path), "config file"), "", str(path), set_by)
    for text in overrides or []:
        dotted, value = parse_override(text)
        _merge_section(cfg, _nest(dotted, value), "", f"override {text!r}", set_by)
    try:
        validate(cfg)
        check_machine(cfg, gpu=check_gpu)
    except ConfigError as err:  # checks across keys: say where each named key was set
        raise ConfigError(f"{err}{_sources(str(err), set_by)}") from err
    for message in contradictions(cfg):
        warnings.warn(message, ConfigWarning, stacklevel=2)
    return cfg


def _sources(message: str, set_by: dict[str, str]) -> str:
    """' (model.d_model: configs/x.yaml)' for each key that `message` names ('key=', "key 'key'", 'Config.key=')."""
    named = [
        k for k in set_by
        if any(f"{k}{end}" in message for end in ("=", " ", ":")) or f"key '{k}'" in message
        or f"Config.{k.partition('.')[2]}=" in message
    ]  # fmt: skip
    return f" ({'; '.join(f'{k}: {set_by[k]}' for k in named)})" if named else ""


def validate(cfg: RunConfig) -> None:
    """Every key in its range, combinations that cannot run, the model keys (checked by the model registry)."""
    check_ranges(cfg)
    check_cross_keys(cfg)
    if "arch" not in cfg.model:
        raise ConfigError("model.arch is missing (one of the registered architectures)")
    max_len = getattr(model_spec(cfg), "max_len", None)
    if cfg.data.task in MEMORY_TASKS:  # the generator's keys, and the position table against its sequences
        check_memory(cfg.data, max_len)
    else:
        check_position_table(cfg.data, cfg.train, max_len)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["optim"]["betas"] = list(cfg.optim.betas)
    return out


def format_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (`--print-config`); loading it back with `--config` gives the same run."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_config(cfg))


def config_keys() -> list[KeySpec]:
    """Every dotted key with its type, default, description and allowed values (for help and tests)."""
    return list(key_specs(RunConfig))


def describe_keys() -> str:
    """One line per key: `name  type  default  description [range]`, for `pipeline train --help`."""
    return describe(config_keys())
