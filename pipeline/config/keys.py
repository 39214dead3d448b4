"""What every config key may hold, as data on the dataclass fields: `key(default, help, gt=0)` declares a key with
its description and range, and one table drives typing (`coerce`), range checks, `pipeline train --help` and the fuzz
tests. Written by hand because no library here checks a nested dataclass against per-field bounds with our one-line
messages (jsonargparse types fields but has no ranges or cross-key rules; pydantic is not a dependency).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import yaml

from pipeline.config.errors import ConfigError
from pipeline.config.yaml_files import load_yaml

INT64 = 2**63  # ints past this overflow torch and Lightning counters

type_hints = functools.cache(get_type_hints)  # resolved annotations of a class; evaluated once per class


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
        if hint is float or text.startswith("float"):  # `float | None`: None was handled above
            return _number(value, integer=False)
        if origin is tuple:
            items = value if isinstance(value, list | tuple) else load_yaml(str(value))
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


def reject_unknown(
    mapping: dict[str, Any],
    allowed: Iterable[str],
    where: str,
    prefix: str = "",
    error: type[Exception] = ConfigError,
) -> None:
    """Raise `error` '<where>: unknown key '<prefix><key>'; did you mean '<closest>'?' for the first unknown key."""
    names = list(allowed)
    for name in mapping:
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise error(f"{where}: unknown key '{prefix}{name}'{hint}")
