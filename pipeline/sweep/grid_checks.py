"""The checks of a grid file's parts (`pipeline.sweep.grid`): numbers, mappings, base files, model keys and
dotted `set`/`cells` overrides, each failing with one line that names the grid file and key."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, coerce, config_keys, shipped_path
from pipeline.config.keys import check_value
from pipeline.config.model_section import check_model


class SweepError(ConfigError):
    """A bad grid file or sweep directory; the message names the file and key."""


def mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a mapping, got {value!r}")
    return value


def config_path(grid_path: Path, name: str) -> str:
    """A `base:` file: relative to the grid file's directory, else to the current directory, else to the
    repository (the shipped grids name repo-relative paths, so `--grid /abs/path/grid.yaml` works anywhere)."""
    candidates = [Path(name)] if Path(name).is_absolute() else [grid_path.parent / name, shipped_path(name)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    tried = ", ".join(str(c) for c in candidates)
    raise SweepError(f"{grid_path}: key 'base': config file {name!r} not found (tried {tried})")


def numbers(raw: Any, where: str, kind: type) -> list:
    """A list of positive ints (seeds: >= 0) or finite positive floats; one-line errors naming the key."""
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    out = []
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (float(v) == int(v) and v >= 0 if kind is int else v > 0)
        if not ok:
            what = "integers >= 0" if kind is int else "positive numbers"
            raise SweepError(f"{where} holds {v!r}; expected a list of {what}")
        out.append(kind(v))
    if len(set(out)) != len(out):
        raise SweepError(f"{where} repeats a value: {values!r}")
    return out


def is_count(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x > 0 and float(x) == int(x)


def check_model_keys(arch: str, model: dict[str, Any], where: str) -> None:
    """Model keys (an arm's `model`, a size's keys) against `arch`'s config dataclass, when the grid is read: a
    typo would otherwise surface only when planning reaches that run, as that one run's error."""
    try:
        check_model({**model, "arch": arch})
    except ConfigError as err:
        raise SweepError(f"{where}: {str(err).removeprefix('model: ')}") from err


def check_set(values: dict[str, Any], where: str, arch: str) -> None:
    """`set` overrides (dotted keys, or nested mappings of them) against the run-config schema: each key known,
    its value of the key's type and in its range; `model.*` keys against `arch`."""
    specs = {s.name: s for s in config_keys() if s.name != "model"}
    sections = {name.rpartition(".")[0] for name in specs} - {""}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            dotted = f"{prefix}{name}"
            if dotted == "model" or dotted.startswith("model."):
                keys = value if dotted == "model" else {dotted.partition(".")[2]: value}
                check_model_keys(arch, mapping(keys, f"{where}.{dotted}"), where)
            elif dotted in sections and isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif dotted not in specs:
                close = difflib.get_close_matches(dotted, list(specs), n=1)
                hint = (
                    f"; did you mean '{close[0]}'?" if close else "; `pipeline train --help` lists the keys"
                )
                raise SweepError(f"{where}: unknown config key '{dotted}'{hint}")
            else:
                try:
                    typed = coerce(value, specs[dotted].hint, f"{where}: key '{dotted}'")
                    if typed is not None:
                        check_value(specs[dotted].bounds, typed, dotted, where)
                except ConfigError as err:
                    raise SweepError(str(err)) from err

    walk(values, "")


def flat_keys(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested override mappings -> dotted keys (`{data: {mqar: {n_pairs: 4}}}` -> `{data.mqar.n_pairs: 4}`);
    `model` stays one mapping (the grid sets the model as a whole)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and dotted != "model" and not dotted.startswith("model."):
            out |= flat_keys(value, f"{dotted}.")
        else:
            out[dotted] = value
    return out


def parse_cells(
    raw: Any, path: Path, archs: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """`cells:` -> ({label: {dotted key: value}}, {label: [size names]}), each cell's keys checked like `set`
    against every arch. A cell's `sizes: [d32, ...]` (not a config key) runs it at those sizes only: a side
    question (pairs versus distance, say) asked at one width without crossing it with every width."""
    cells = mapping(raw, f"{path}: key 'cells'")
    out, sizes = {}, {}
    for label, keys in cells.items():
        where = f"{path}: key 'cells.{label}'"
        if not isinstance(label, str) or not label.replace("_", "").replace(".", "").isalnum():
            raise SweepError(
                f"{where}: a cell label is letters, digits, '_' and '.' (it goes into run names)"
            )
        keys = dict(mapping(keys, where))
        only = keys.pop("sizes", None)
        if only is not None:
            if not isinstance(only, list) or not only or not all(isinstance(x, str) for x in only):
                raise SweepError(f"{where}.sizes: expected a list of size names (e.g. [d32]), got {only!r}")
            sizes[label] = list(only)
        if not keys:
            raise SweepError(f"{where}: a cell sets at least one key (e.g. data.mqar.n_pairs: 8)")
        for arch in dict.fromkeys(archs):
            check_set(keys, where, arch)
        out[label] = flat_keys(keys)
    return out, sizes


def check_cell_sizes(cell_sizes: dict[str, list[str]], archs: dict[str, dict[str, Any]], path: Path) -> None:
    """Every size a cell names is a size of some arm that runs the cell: a typo would silently drop the cell."""
    for label, names in cell_sizes.items():
        known = {s for spec in archs.values() if label in spec["cells"] for s in spec["sizes"]}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SweepError(f"{path}: key 'cells.{label}.sizes': unknown size {unknown[0]!r}; the sizes of the "
                             f"arms that run this cell: {', '.join(sorted(known)) or 'none'}")  # fmt: skip


def arm_cells(raw: Any, cells: dict[str, Any], where: str) -> list[str]:
    """An arm's `cells:` (labels of the grid's cells it runs at) -> the labels; absent: every cell."""
    if raw is None:
        return list(cells)
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise SweepError(f"{where}: expected a list of cell labels, got {raw!r}")
    unknown = [c for c in raw if c not in cells]
    if unknown:
        known = ", ".join(cells) or "none: the grid has no `cells:`"
        raise SweepError(f"{where}: unknown cell {unknown[0]!r}; the grid's cells: {known}")
    return list(raw)
