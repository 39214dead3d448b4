"""Generated malformed configs: every key x hostile values x (YAML file, override), plus typos of every key name.

The cases come from `config_keys()` (the dataclass fields) and each key's bounds, which are data on the fields
(`pipeline/config/schema.py`). The oracle below decides validity from those bounds by its own arithmetic, so a check
missing from `pipeline/config/` fails here: an invalid value that loads, a valid one that is refused, or any
exception other than a one-line ConfigError naming the key. Only configs are loaded (no data, no training).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, get_type_hints

import pytest
import yaml

from pipeline.config import ConfigError, ConfigWarning, KeySpec, config_keys, load_config, model_spec
from pipeline.models.registry import MODEL_REGISTRY
from tests.conftest import ROOT

TINY = [ROOT / "configs/tiny/base.yaml", ROOT / "configs/tiny/transformer.yaml"]
NUMBER_VALUES = [
    ".nan", ".inf", "-.inf", "-1", "0", "1", "3", "0.5", "0.999", "1.0", "-0.1", "1.5", "7.0", "1e3", "1e400",
    "9223372036854775808", "true", "false", "abc", "[1]", "{a: 1}", "null", "''",
]  # fmt: skip
STRING_VALUES = ["abc", "123", "true", "[1]", "{a: 1}", "null", "''"]
BOOL_VALUES = ["true", "false", "yes", "off", "0", "1", "2", "abc", "[1]", "null", "0.5"]
TUPLE_VALUES = ["[0.9, 0.98]", "[0, 0.5]", "[0.9]", "[0.9, 0.98, 0.99]", "[1.0, 0.9]", "[-0.1, 0.9]",
                "[.nan, 0.9]", "[0.9, .inf]", "[true, 0.9]", "[abc, 0.9]", "0.9", "abc", "null"]  # fmt: skip
MODEL_BAD_NUMBERS = [".nan", ".inf", "-.inf", "true", "abc", "[1]", "1e400", "{a: 1}"]
MISSING = object()
MEMORY_TASK_ONLY = ("train.stop_at_accuracy",)  # any value but null is refused with data.task=translation


def _positions_needed() -> dict[str, Callable[[int], int]]:
    """The base run's keys that set how many positions its Transformer uses: key -> positions a value needs.

    The oracle's own arithmetic (pipeline/config/checks.py must agree): a translation target is fed after BOS,
    decoding (the base decodes BLEU samples) feeds `decode_max_len` positions."""
    cfg = load_config(TINY, check_gpu=False)
    assert cfg.data.task == "translation" and cfg.train.bleu_samples > 0
    return {"data.max_len": lambda n: n + 1, "train.decode_max_len": lambda n: n}


POSITIONS = _positions_needed()
TABLE = model_spec(load_config(TINY, check_gpu=False)).max_len  # the base Transformer's position table


def _type(spec: KeySpec) -> str:
    return spec.type_text


def _as_number(value: Any) -> float | int | None:
    """What a YAML scalar means as a number (YAML 1.1 reads `1e3` as a string); None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return value


def _in_bounds(x: float, spec: KeySpec) -> bool:
    b = spec.bounds
    if b.choices is not None:
        return x in b.choices
    return (
        math.isfinite(x)
        and (isinstance(x, float) or abs(x) < 2**63)  # ints must fit torch's int64
        and (b.gt is None or x > b.gt)
        and (b.ge is None or x >= b.ge)
        and (b.lt is None or x < b.lt)
        and (b.le is None or x <= b.le)
    )


def expected(spec: KeySpec, raw: str) -> Any:
    """The typed value a valid `raw` must load as, or MISSING if `raw` must be refused."""
    value, kind = yaml.safe_load(raw), _type(spec)
    if value is None:
        return None if "None" in kind else MISSING
    if kind == "bool":
        words = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        return words.get(value, MISSING) if isinstance(value, str) else MISSING
    if kind.startswith("tuple"):
        if not isinstance(value, list) or len(value) != 2:
            return MISSING
        items = [_as_number(v) for v in value]
        ok = all(v is not None and _in_bounds(float(v), spec) for v in items)
        return tuple(float(v) for v in items) if ok else MISSING
    if kind.startswith(("int", "float")):
        x = _as_number(value)
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return MISSING
        if kind.startswith("int"):
            if isinstance(x, float) and not x.is_integer():
                return MISSING
            x = int(x)
        else:
            x = float(x)
        if spec.name in POSITIONS and _in_bounds(x, spec) and POSITIONS[spec.name](x) > TABLE:
            return MISSING  # past the position table: refused naming model.max_len
        if spec.name in MEMORY_TASK_ONLY:
            return MISSING  # the base is a translation run: refused naming the key (test_memory_pipeline.py)
        return x if _in_bounds(x, spec) else MISSING
    if kind.startswith("str"):
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            return MISSING
        if spec.name == "train.deepspeed_config":
            return MISSING  # a path that does not exist (an existing file loads: test_config.py)
        return str(value) if spec.bounds.choices is None or value in spec.bounds.choices else MISSING
    raise AssertionError(f"no fuzz values for {spec.name}: {kind}")


def _values(spec: KeySpec) -> list[str]:
    kind = _type(spec)
    if spec.bounds.choices is not None:  # every choice, plus near misses generated from them
        choices = [str(c) for c in spec.bounds.choices]
        misses = [choices[0].upper(), choices[-1] + "x", choices[0][:-1], "", "[1]", "true", "null"]
        return choices + [m if m in ("[1]", "true", "null") else repr(m) for m in misses if m not in choices]
    if kind == "bool":
        return BOOL_VALUES
    if kind.startswith("tuple"):
        return TUPLE_VALUES
    if kind.startswith(("int", "float")):
        return NUMBER_VALUES
    return STRING_VALUES


def _nested_yaml(dotted: str, raw: str) -> str:
    parts = dotted.split(".")
    return (
        "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parts[:-1]))
        + f"{'  ' * (len(parts) - 1)}{parts[-1]}: {raw}\n"
    )


class Case(NamedTuple):
    spec: KeySpec
    raw: str
    via: str  # "override" | "file"


CASES = [
    Case(spec, raw, via)
    for spec in config_keys()
    if spec.name != "model"  # a free mapping, fuzzed per architecture below
    for raw in _values(spec)
    for via in ("override", "file")
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny transformer with the accelerator freed: the tiny base pins cpu, making 16-mixed a cross-key error."""
    free = tmp_path_factory.mktemp("fuzz") / "free.yaml"
    free.write_text("train: {accelerator: auto}\n")
    return [*TINY, free]


def _load(case: Case, base: list[Path]):
    if case.via == "override":
        return load_config(base, [f"{case.spec.name}={case.raw}"], check_gpu=False)
    path = base[-1].with_name("fuzz.yaml")
    path.write_text(_nested_yaml(case.spec.name, case.raw))
    return load_config([*base, path], check_gpu=False)


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _refusal_problem(load: Callable[[], Any], *needles: str) -> str | None:
    """None if `load()` raises a one-line ConfigError holding every needle; else what happened instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfigWarning)  # contradictions warn; tested in test_config.py
            cfg = load()
    except ConfigError as err:
        message = str(err)
        lacks = [n for n in needles if n not in message]
        return f"message {message!r} lacks {lacks}" if lacks or "\n" in message else None
    except Exception as err:  # noqa: BLE001 - any other type is the failure this suite looks for
        return f"{type(err).__name__} instead of ConfigError: {err}"
    return f"loaded ({cfg!r:.60})"


def test_the_generator_covers_enough_and_every_number_has_a_sign() -> None:
    invalid = [c for c in CASES if expected(c.spec, c.raw) is MISSING]
    assert len(invalid) >= 100 and len(CASES) - len(invalid) >= 50
    for spec in config_keys():
        if _type(spec).startswith(("int", "float", "tuple")) and spec.bounds.choices is None:
            b = spec.bounds
            assert b.gt is not None or b.ge is not None, f"{spec.name} has no lower bound"


@pytest.mark.parametrize("spec", [s for s in config_keys() if s.name != "model"], ids=lambda s: s.name)
def test_value_loads_exactly_when_its_bounds_allow_it(spec: KeySpec, base: list[Path]) -> None:
    """One test per key (pytest's per-test overhead would dominate 2,000 one-load tests); all cases reported."""
    failures = []
    cases = [c for c in CASES if c.spec.name == spec.name]
    assert cases, f"no cases generated for {spec.name}"
    for case in cases:
        want = expected(spec, case.raw)
        if want is MISSING:
            needles = [spec.name] + (
                ["fuzz.yaml"] if case.via == "file" and "deepspeed" not in spec.name else []
            )
            problem = _refusal_problem(lambda case=case: _load(case, base), *needles)
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConfigWarning)
                    got = _get(_load(case, base), spec.name)
                ok = got == want and type(got) is type(want)
                problem = None if ok else f"loaded as {got!r}, expected {want!r}"
            except Exception as err:  # noqa: BLE001
                problem = f"refused a valid value: {type(err).__name__}: {err}"
        if problem:
            failures.append(f"{case.via} {spec.name}={case.raw}: {problem}")
    assert not failures, "\n".join(failures)


def _model_cases() -> list[tuple[str, str, str]]:
    """(arch, field, raw) for every numeric or bool field of every architecture: values no annotation allows."""
    out = []
    for arch, (config_cls, _) in sorted(MODEL_REGISTRY.items()):
        hints = get_type_hints(config_cls)
        for f in dataclasses.fields(config_cls):
            text = str(hints[f.name])
            if f.name in ("vocab_size", "pad_id"):
                continue
            if "bool" in text:
                out += [(arch, f.name, raw) for raw in ("abc", "0.5", "[1]", "null")]
            elif "int" in text or "float" in text:
                bad = (
                    MODEL_BAD_NUMBERS
                    + ([] if "None" in text else ["null"])
                    + ([] if "float" in text else ["1.5"])
                )
                out += [(arch, f.name, raw) for raw in bad]
    return out


@pytest.mark.parametrize("arch", sorted(MODEL_REGISTRY))
def test_model_key_of_the_wrong_type_is_named(arch: str, base: list[Path]) -> None:
    model = f"{{arch: {arch}, d_model: 32, n_layers: 2{', n_heads: 2' if arch == 'transformer' else ''}}}"
    failures = []
    cases = [c for c in MODEL_CASES if c[0] == arch]
    assert cases
    for _, name, raw in cases:
        overrides = [f"model={model}", f"model.{name}={raw}"]
        problem = _refusal_problem(lambda o=overrides: load_config(base, o, check_gpu=False), name)
        if problem:
            failures.append(f"model.{name}={raw}: {problem}")
    assert not failures, "\n".join(failures)


def _typos(name: str) -> list[str]:
    """Deterministic one-edit misspellings: a letter dropped, two swapped, one doubled, a plural, '-' for '_'."""
    i = len(name) // 2
    out = [name[:i] + name[i + 1 :], name[:i] + name[i] + name[i:], name + "s", name.replace("_", "-")]
    if len(name) > 2:
        out.append(name[0] + name[2] + name[1] + name[3:])
    return list(dict.fromkeys(t for t in out if t != name and len(t) > 2))


def _typo_cases() -> list[tuple[str, str, str]]:
    """(section, misspelt key, real key): every leaf key and every section name, misspelt."""
    specs = [s for s in config_keys()]
    by_section = {
        sec: [s.name.rsplit(".", 1)[-1] for s in group]
        for sec, group in itertools.groupby(
            specs, key=lambda s: s.name.rsplit(".", 1)[0] if "." in s.name else ""
        )
    }
    top = by_section[""] + [sec for sec in by_section if sec and "." not in sec]
    for sec in [s for s in by_section if "." in s]:  # a nested section (data.mqar) is a key of its parent
        parent, child = sec.rsplit(".", 1)
        by_section[parent].append(child)
    out = []
    for sec, names in by_section.items():
        for real in top if sec == "" else names:
            out += [(sec, typo, real) for typo in _typos(real) if typo not in (top if sec == "" else names)]
    return out


MODEL_CASES = _model_cases()
TYPO_CASES = _typo_cases()


@pytest.mark.parametrize("section", sorted({c[0] for c in TYPO_CASES}))
def test_misspelt_key_is_named_with_the_real_one(section: str, base: list[Path]) -> None:
    path = base[-1].with_name("typo.yaml")
    failures = []
    cases = [c for c in TYPO_CASES if c[0] == section]
    assert cases
    for _, typo, real in cases:
        dotted, suggested = (f"{section}.{typo}", f"{section}.{real}") if section else (typo, real)
        path.write_text(_nested_yaml(dotted, "1"))
        expect = (f"typo.yaml: unknown key '{dotted}'", f"did you mean '{suggested}'")
        problem = _refusal_problem(lambda: load_config([*base, path], check_gpu=False), *expect)
        if problem:
            failures.append(f"{dotted}: {problem}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", sorted(POSITIONS))
def test_position_table_boundary_is_exact(name: str, base: list[Path]) -> None:
    """The longest value whose positions fit the base Transformer's table loads; one more is refused naming the
    key and model.max_len (it used to fail mid-run or in the final evaluation)."""
    fits = max(n for n in range(1, TABLE + 2) if POSITIONS[name](n) <= TABLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        assert _get(load_config(base, [f"{name}={fits}"], check_gpu=False), name) == fits
    over = [f"{name}={fits + 1}"]
    assert (
        _refusal_problem(lambda: load_config(base, over, check_gpu=False), name, f"model.max_len={TABLE}")
        is None
    )
