"""The run config's `model` section: a free dict whose keys depend on `model.arch`, checked against the model
registry, and turned into the architecture's validated config once per run (`model_spec`), so the model is built
from that object instead of re-parsing the dict (`pipeline.training.run_model`).

The architectures' configs come from `pipeline.models.configs`, which imports no torch: a bad key is reported
in a second, and `pipeline submit` and `--help` stay light.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import TYPE_CHECKING, Any

from pipeline.config.errors import ConfigError
from pipeline.config.keys import type_hints
from pipeline.config.memory import MEMORY_TASKS, model_vocab_size

if TYPE_CHECKING:
    from pipeline.config.schema import DataConfig, RunConfig
    from pipeline.models.configs import Seq2SeqConfig

SET_BY_DATA = {
    "vocab_size": "data.vocab_size (mqar/copy: the task's vocabulary)",
    "pad_id": "the data (<pad> is id 0)",
    "task": "data.task (lm, mqar, copy: a decoder-only model; translation/passages: seq2seq)",
}  # model keys the run fills in


def check_model(model: dict[str, Any]) -> None:
    """Keys and value types of `model` against its architecture's dataclass, before the registry builds it.

    The registry checks ranges; this adds what it lets through: a typo's closest key, a bool or a string where a
    number goes (`init_range: true` is 1.0 to isinstance), and non-finite floats (`init_range: .inf`).
    """
    from pipeline.models.configs import CONFIGS

    arch = model.get("arch")
    if arch not in CONFIGS:
        raise ConfigError(f"model.arch: unknown model arch {arch!r}; known: {sorted(CONFIGS)}")
    config_cls = CONFIGS[arch]
    hints = type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls) if f.name not in SET_BY_DATA]
    for name, value in model.items():
        if name == "arch":
            continue
        if name in SET_BY_DATA:
            raise ConfigError(f"model.{name} is set by {SET_BY_DATA[name]}; remove it from the model section")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean 'model.{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"model: unknown key 'model.{name}' for model arch {arch!r}{hint}")
        problem = _model_value_problem(value, str(hints[name]).replace("typing.", ""))
        if problem:
            raise ConfigError(f"model.{name}={value!r} {problem}")


def _model_value_problem(value: Any, text: str) -> str | None:
    """Why `value` cannot be of the annotated type `text` ('int | None', 'float', 'bool', 'str'), else None."""
    if value is None:
        return None if "None" in text else f"must not be empty (expected {text})"
    if isinstance(value, bool):
        return None if "bool" in text else f"must be {text}, not a boolean"
    if "bool" in text and not isinstance(value, bool):
        return "must be true or false"
    if "float" in text or "int" in text:
        if not isinstance(value, int | float):
            return f"must be a number ({text})"
        if not math.isfinite(value):
            return "must be a finite number"
        if "float" not in text and not isinstance(value, int):
            return "must be an integer"
    elif "str" in text and not isinstance(value, str):
        return f"must be a string ({text})"
    return None


def model_task(data: DataConfig) -> str:
    """The model's `task` follows the data's: one key (`data.task`) chooses it."""
    return "lm" if data.task in ("lm", *MEMORY_TASKS) else "seq2seq"


def model_spec(cfg: RunConfig) -> Seq2SeqConfig:
    """`cfg.model` with the keys the data sets, as the architecture's validated config (its dataclass).

    Built once and kept on `cfg`; built again only if `cfg.model`, the model's vocabulary (`data.vocab_size`, or a
    memory task's) or `data.task` changed since (benchmarks edit a loaded config in place). `pad_id` is the dataclass default, 0: the data's <pad> id.
    """
    vocab = model_vocab_size(cfg.data)
    inputs = (repr(sorted(cfg.model.items(), key=str)), vocab, cfg.data.task)
    cached = cfg.__dict__.get("_model_spec")
    if cached is not None and cached[0] == inputs:
        return cached[1]
    check_model(cfg.model)
    from pipeline.models.configs import model_config

    task = model_task(cfg.data)
    try:
        built = model_config(**{**cfg.model, "vocab_size": vocab, "task": task})
    except (TypeError, ValueError) as err:
        why = (
            f" (data.task={cfg.data.task} builds a decoder-only model: no source side)"
            if task == "lm"
            else ""
        )
        raise ConfigError(f"model: {err}{why}") from err
    cfg.__dict__["_model_spec"] = (inputs, built)
    return built
