"""The one reader of the project's YAML (and JSON) mapping files: run configs, sweep grids, cluster files and a
DeepSpeed override. Every error is one line naming the file; a key given twice is an error naming it and both lines
(PyYAML lets the last one win silently; GPT-NeoX refuses it, and so do we)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.errors import ConfigError

# libyaml's parser where PyYAML was built with it: same YAML, ~10x faster than the pure-Python one. Its constructor
# (where mappings are built, and where the duplicate check below hooks in) is Python either way.
_BASE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO = Path(__file__).resolve().parents[2]  # the repository: `configs/` ships beside the package


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice; `key` is dotted from the document's top (`train.max_steps`)."""

    def __init__(self, key: str, first_line: int, second_line: int) -> None:
        super().__init__(f"key '{key}' given twice (line {first_line} and line {second_line})")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """A safe loader that refuses a mapping key given twice (1-based lines of both in the error)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_unique_keys(node)
        return super().construct_document(node)


# YAML 1.2 reads `1e-3` as a float; PyYAML implements YAML 1.1, whose float needs a dot (`1.0e-3`), so `lrs: [1e-3]`
# arrived as the string '1e-3' and failed a grid's number check. A scalar of digits and an exponent is a float here.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _check_unique_keys(root: yaml.Node) -> None:
    """Walk the composed document once; scalar keys compare by resolved tag and text (`1` and `'1'` differ).

    Iterative, and each node visited once: an alias shares its anchor's node, and may even contain it."""
    todo: list[tuple[yaml.Node, str]] = [(root, "")]
    seen_nodes: set[int] = set()
    while todo:
        node, prefix = todo.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend((item, f"{prefix}{i}.") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    line, ident = key_node.start_mark.line + 1, (key_node.tag, key_node.value)
                    if ident in lines:
                        raise DuplicateKeyError(f"{prefix}{key_node.value}", lines[ident], line)
                    lines[ident] = line
                todo.append((value_node, f"{prefix}{getattr(key_node, 'value', '?')}."))


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a PyYAML error: its problem and 1-based line/column (its str() spans several lines)."""
    if isinstance(err, DuplicateKeyError):
        return str(err)
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or str(err).splitlines()[0]}{where}"


def load_yaml(text: str) -> Any:
    """Parse YAML text with the project's loader (safe, duplicate keys refused)."""
    return yaml.load(text, UniqueKeyLoader)


def shipped_path(path: str | Path) -> Path:
    """A config path as given when it exists (or is absolute), else the same relative path inside the repository,
    so `configs/...` names work from any directory (`pipeline demo`, a grid's `base:`)."""
    p = Path(path)
    if p.exists() or p.is_absolute() or not (REPO / p).exists():
        return p
    return REPO / p


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML (or, by suffix, JSON) file that must hold a mapping; every error is one line naming the file.

    `what` names the file's role in messages ("config file", "grid file", "train.deepspeed_config"). An empty file
    is an empty mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from err
    except OSError as err:
        raise ConfigError(f"{what}: cannot read {path}: {err.strerror}") from err
    is_json = path.suffix.lower() == ".json"
    try:
        values = (json.loads(text) if is_json else load_yaml(text)) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{what}: {path} is not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}"
        ) from err
    except DuplicateKeyError as err:
        raise ConfigError(f"{what}: {path}: {err}; remove one") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: {path} is not valid YAML: {yaml_problem(err)}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{what}: {path}: top level must be a mapping of keys, got {type(values).__name__}")
    return values
