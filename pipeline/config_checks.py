"""What every config key may hold, and the checks that read it: ranges, contradictions, this machine.

The ranges are data on the dataclass fields (`key(default, help, gt=0)` in `pipeline/config.py`), so one table
drives the checks, `pipeline train --help` and the fuzz tests. Written by hand because no library here checks a
nested dataclass against per-field bounds with our one-line messages (jsonargparse types fields but has no ranges
or cross-key rules; pydantic is not a dependency). Nothing here imports torch at module level.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

import yaml

if TYPE_CHECKING:
    from pipeline.config import RunConfig

INT64 = 2**63  # ints past this overflow torch and Lightning counters
SET_BY_DATA = {
    "vocab_size": "data.vocab_size",
    "pad_id": "the data (<pad> is id 0)",
    "task": "data.task (lm: a decoder-only model; translation/passages: seq2seq)",
}  # model keys the run fills in


type_hints = functools.cache(get_type_hints)  # resolved annotations of a class; evaluated once per class


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which."""


class ConfigWarning(UserWarning):
    """A key that does nothing in this mode, or values that contradict each other without being unusable."""


@dataclass(frozen=True)
class Bounds:
    """Allowed values of one key: an interval (numbers) and/or a set of choices."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None

    def text(self) -> str:
        """Human-readable range, e.g. '> 0', 'in [0, 1)', 'one of adamw, sgd'; '' if unbounded."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        hi = f"{self.le:d}]" if isinstance(self.le, int) else f"{self.le:g}]" if self.le is not None else None
        hi = hi or (
            f"{self.lt:d})" if isinstance(self.lt, int) else f"{self.lt:g})" if self.lt is not None else None
        )
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return f"{'>=' if self.ge is not None else '>'} {lo[1:]}"
        if hi:
            return f"{'<=' if self.le is not None else '<'} {hi[:-1]}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why `value` is outside these bounds (None if it is inside)."""
        if self.choices is not None:
            return None if value in self.choices else f"is not one of {', '.join(map(str, self.choices))}"
        if isinstance(value, tuple):  # tuple[float, ...]: every item in range
            return next((f"item {v!r} {p}" for v in value if (p := self.problem(v))), None)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if not math.isfinite(value):
            return "must be a finite number"
        if isinstance(value, int) and abs(value) >= INT64:
            return "does not fit in 64 bits"
        inside = (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )
        return None if inside else f"must be {self.text()}"


def key(default: Any, help: str, **bounds: Any) -> Any:
    """A dataclass field with a one-line description and its allowed values (see `Bounds`)."""
    return field(default=default, metadata={"help": help, "bounds": Bounds(**bounds)})


def section(factory: Any, help: str) -> Any:
    return field(default_factory=factory, metadata={"help": help, "bounds": Bounds()})


@dataclass(frozen=True)
class KeySpec:
    """One dotted config key as `describe_keys` and the fuzz tests see it."""

    name: str
    hint: Any
    default: Any
    help: str
    bounds: Bounds

    @property
    def type_text(self) -> str:
        text = self.hint.__name__ if isinstance(self.hint, type) else str(self.hint)
        return text.replace("typing.", "")


def key_specs(cls: type, prefix: str = "") -> Iterator[KeySpec]:
    """Every leaf key of a config dataclass tree, depth first, in declaration order."""
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from key_specs(hint, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meta = f.metadata
        yield KeySpec(f"{prefix}{f.name}", hint, default, meta.get("help", ""), meta.get("bounds", Bounds()))


def _number(value: Any, integer: bool) -> int | float:
    """A YAML/CLI value as an int or float; bools, lists and non-integral floats for an int raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    if isinstance(value, str):  # YAML 1.1 reads `1e-3` and `1e400` as strings
        text = value.strip()
        try:
            return int(text) if integer else float(text)
        except ValueError:
            value = float(text)
    if not integer:
        return float(value)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(value)
    return int(value)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert YAML/CLI values to the annotated type, with an error naming the key."""
    origin = getattr(hint, "__origin__", None)
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where}: must not be empty (expected {text})")
    try:
        if hint is bool:
            words = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
            if isinstance(value, str) and value.lower() in words:
                return words[value.lower()]
            if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                return bool(value)
            raise ValueError(value)
        if hint is int or text.startswith("int"):
            return _number(value, integer=True)
        if hint is float:
            return _number(value, integer=False)
        if origin is tuple:
            items = value if isinstance(value, list | tuple) else yaml.safe_load(str(value))
            if not isinstance(items, list | tuple) or len(items) != len(hint.__args__):
                raise ValueError(value)
            return tuple(_number(v, integer=False) for v in items)
        if hint is str or text.startswith("str"):
            if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
                raise ValueError(value)
            return str(value)
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError, OverflowError, yaml.YAMLError) as err:
        raise ConfigError(f"{where}: cannot read {value!r} as {text}") from err
    return value


def describe(specs: list[KeySpec]) -> str:
    """Aligned rows `name  type  default  description [range]`, plus a line on the free `model` keys."""
    rows = []
    for spec in specs:
        default = json.dumps(list(spec.default) if isinstance(spec.default, tuple) else spec.default)
        allowed = spec.bounds.text()
        rows.append((spec.name, spec.type_text, default, spec.help + (f" [{allowed}]" if allowed else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    lines.append(
        "model.<key>: set by model.arch, see docs/interfaces.md and pipeline/models/ (e.g. model.d_model)"
    )
    return "\n".join(lines)


def check_value(spec_bounds: Bounds, value: Any, name: str, source: str = "") -> None:
    """ConfigError '<source>: <name>=<value> <problem>' if `value` is outside its bounds."""
    problem = spec_bounds.problem(value)
    if problem:
        raise ConfigError(f"{source + ': ' if source else ''}{name}={value!r} {problem}")


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Every key of an already-typed config tree within its bounds (defaults, files and overrides alike)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif value is not None and "bounds" in f.metadata:
            check_value(f.metadata["bounds"], value, f"{prefix}{f.name}")


def check_model(model: dict[str, Any]) -> None:
    """Keys and value types of `model` against its architecture's dataclass, before the registry builds it.

    The registry checks ranges; this adds what it lets through: a typo's closest key, a bool or a string where a
    number goes (`init_range: true` is 1.0 to isinstance), and non-finite floats (`init_range: .inf`).
    """
    import difflib

    from pipeline.models import MODEL_REGISTRY  # torch import, deferred so `pipeline submit` stays light

    arch = model.get("arch")
    if arch not in MODEL_REGISTRY:
        raise ConfigError(f"model.arch: unknown model arch {arch!r}; known: {sorted(MODEL_REGISTRY)}")
    config_cls = MODEL_REGISTRY[arch][0]
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


def contradictions(cfg: RunConfig) -> list[str]:
    """Keys that do nothing in this mode, and intervals longer than the run: legal, but probably not meant."""
    t, o, log = cfg.train, cfg.optim, cfg.logging
    out = []
    if t.strategy != "deepspeed":
        for name, unused in (
            ("zero_stage", t.zero_stage != 2),
            ("offload_optimizer", t.offload_optimizer),
            ("deepspeed_config", t.deepspeed_config is not None),
        ):
            if unused:
                value = getattr(t, name)
                out.append(f"train.{name}={value!r} does nothing without train.strategy=deepspeed")
    if o.schedule == "halving":
        if o.warmup_steps:
            out.append(f"optim.warmup_steps={o.warmup_steps} does nothing with optim.schedule=halving")
        if not o.halve_every:
            out.append("optim.schedule=halving with optim.halve_every=0 never halves: the lr stays constant")
    elif o.halve_after or o.halve_every:
        out.append(f"optim.halve_after/halve_every do nothing with optim.schedule={o.schedule}")
    if o.schedule != "cosine" and o.min_lr_ratio != 0.1:
        out.append(f"optim.min_lr_ratio={o.min_lr_ratio} does nothing with optim.schedule={o.schedule}")
    if o.schedule != "halving" and o.warmup_steps >= t.max_steps:
        out.append(
            f"optim.warmup_steps={o.warmup_steps} >= train.max_steps={t.max_steps}: the run ends inside the warmup"
        )
    if o.name == "adamw" and o.momentum:
        out.append(f"optim.momentum={o.momentum} does nothing with optim.name=adamw (betas apply)")
    if o.name == "sgd" and o.betas != (0.9, 0.98):
        out.append(f"optim.betas={list(o.betas)} does nothing with optim.name=sgd")
    for name in ("val_every", "ckpt_every", "log_every", "grad_reach_every"):
        every = getattr(t, name)
        if every > t.max_steps:
            out.append(
                f"train.{name}={every} > train.max_steps={t.max_steps}: it never happens during the run"
            )
    d = cfg.data
    if d.context != 512 and d.task != "lm":
        out.append(
            f"data.context={d.context} does nothing with data.task={d.task} (it is the lm window length)"
        )
    if d.passage_len != 256 and d.task != "passages":
        out.append(f"data.passage_len={d.passage_len} does nothing with data.task={d.task}")
    pair = d.corpus.startswith(("parallel:", "tsv:")) or (d.corpus.startswith("bible:") and "-" in d.corpus)
    if d.task == "lm" and pair:
        out.append(f"data.corpus={d.corpus} is parallel text, but data.task=lm reads monolingual text (preparing "
                   "it fails): use data.corpus=bible:4+k+3 (translations joined by '+') or text:FILE")  # fmt: skip
    if d.task in ("lm", "mqar", "copy") and cfg.train.bleu_samples:
        out.append(
            f"train.bleu_samples={cfg.train.bleu_samples} does nothing with data.task={d.task} (no translation)"
        )
    from pipeline.config_memory import unused_sections

    out += unused_sections(d)
    if not log.wandb and (log.wandb_mode != "offline" or log.entity is not None):
        out.append("logging.wandb_mode/entity do nothing with logging.wandb=false")
    return out


def check_cross_keys(cfg: RunConfig) -> None:
    """Combinations that cannot run anywhere."""
    if cfg.train.precision == "16-mixed" and cfg.train.accelerator == "cpu":
        raise ConfigError(
            "train.precision=16-mixed needs a GPU but train.accelerator=cpu; use 32-true or bf16-mixed"
        )


def sequence_len(data: Any) -> int:
    """Longest target of the task in tokens: the LM window, the passage side, or `data.max_len`."""
    if data.task == "lm":
        return int(data.context)
    if data.task == "mqar":
        return int(data.mqar.seq_len)
    if data.task == "copy":  # `$x|x.` of the longest train or eval string
        return 2 * max(int(data.copy.max_len), int(data.copy.eval_max_len)) + 3
    return int(data.passage_len) if data.task == "passages" else int(data.max_len)


def check_position_table(data: Any, model_max_len: int | None) -> None:
    """A Transformer's position table must hold the longest decoder input (LM: the window; passages: BOS + side).

    Translation keeps its old behaviour (sequences past the table are an error at the first long batch)."""
    if model_max_len is None or data.task == "translation":
        return
    need = sequence_len(data) + (data.task != "lm")  # seq2seq targets are fed with BOS in front
    length = (
        f"data.context={data.context}"
        if data.task == "lm"
        else f"data.passage_len={data.passage_len} (+ BOS)"
    )
    if model_max_len < need:
        raise ConfigError(
            f"model.max_len={model_max_len} is shorter than {length}: the Transformer's position table needs "
            f"model.max_len >= {need}"
        )


def check_machine(cfg: RunConfig, gpu: bool = True) -> None:
    """Files the config names exist, and (if `gpu`) the GPU it asks for is here; torch is imported only then.

    `gpu=False` where a config is planned on one machine to run on another (a login node rendering a GPU job).
    """
    from pathlib import Path

    from pipeline.config import load_mapping

    if cfg.train.deepspeed_config is not None:
        load_mapping(Path(cfg.train.deepspeed_config), "train.deepspeed_config")
    t = cfg.train
    wants_gpu = t.accelerator in ("gpu", "cuda") or (t.precision == "16-mixed" and t.accelerator == "auto")
    if not gpu or not wants_gpu:
        return
    import torch

    why = f"train.accelerator={t.accelerator}" if t.accelerator != "auto" else "train.precision=16-mixed"
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{why} needs a GPU but this machine has none (torch.cuda.is_available() is False); "
            "use train.accelerator=cpu and train.precision=32-true or bf16-mixed"
        )
    if t.devices > torch.cuda.device_count():
        raise ConfigError(
            f"train.devices={t.devices} but this machine has {torch.cuda.device_count()} GPU(s)"
        )
