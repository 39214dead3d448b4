"""Run configuration: typed dataclasses, YAML files merged left to right, dotted `key=value` overrides.

Why not LightningCLI or jsonargparse: our config spans the model registry (whose keys depend on `model.arch`), the
data, the optimiser and the cluster, and must be checked against a checkpoint's config on resume. Plain dataclasses
give exact error messages ("configs/x.yaml: unknown key 'train.max_step'; did you mean 'train.max_steps'?") and a
resolved YAML that is saved next to every run. Each field carries a description and its allowed range
(`key(default, help, gt=0)`, checked in `pipeline/config_checks.py`), which also drive `describe_keys()` for
`pipeline train --help`. The `model` section is a free dict here and is validated by `pipeline.models.model_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config_checks import (
    ConfigError,
    ConfigWarning,
    KeySpec,
    check_cross_keys,
    check_machine,
    check_model,
    check_position_table,
    check_ranges,
    check_value,
    coerce,
    contradictions,
    describe,
    key,
    key_specs,
    section,
    type_hints,
)

__all__ = ["ConfigError", "ConfigWarning", "RunConfig", "describe_keys", "format_config", "load_config"]

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
TASKS = ("translation", "passages", "lm")  # data.task (pipeline/data/prepare.py TASKS)
# libyaml's loader where PyYAML was built with it: same YAML, ~10x faster than the pure-Python one
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class DataConfig:
    dir: str = key("data/bible-en-fr", "prepared shards (made by `pipeline data prepare`, or from `corpus`)")
    corpus: str = key(
        "bible:4-l", "used only when `dir` is not prepared yet: English WEB -> French Segond 1910"
    )
    vocab_size: int = key(8000, "joint BPE vocabulary size, the 4 special tokens included", gt=4)
    max_len: int = key(128, "pairs longer than this (in BPE tokens) are dropped at prepare time", gt=0)
    limit: int = key(0, "prepare only the first N pairs of the corpus (0 = all): tiny runs and tests", ge=0)
    task: str = key(
        "translation",
        "translation: a pair per verse/line; passages: consecutive verses of a chapter joined up to "
        "data.passage_len tokens; lm: decoder-only language model over data.context-token windows "
        "(model.task follows)",
        choices=TASKS,
    )
    context: int = key(512, "data.task=lm: tokens per window; a Transformer needs model.max_len >= it", gt=0)
    passage_len: int = key(
        256, "data.task=passages: max tokens per passage side (replaces data.max_len)", gt=0
    )
    batch_tokens: int = key(4096, "padded tokens per batch per rank (the longer of src and tgt)", gt=0)
    num_workers: int = key(1, "DataLoader worker processes per rank (0 = load in the main process)", ge=0)
    bucket_size: int = key(2048, "samples sorted by length together, to cut padding", gt=0)


@dataclass
class OptimConfig:
    name: str = key("adamw", "optimiser", choices=("adamw", "sgd"))
    lr: float = key(1e-3, "peak learning rate", gt=0)
    betas: tuple[float, float] = key((0.9, 0.98), "AdamW (beta1, beta2)", ge=0, lt=1)
    weight_decay: float = key(0.01, "decoupled weight decay (AdamW) or L2 (SGD)", ge=0)
    momentum: float = key(0.0, "SGD momentum (sgd only)", ge=0, lt=1)
    schedule: str = key(
        "cosine",
        "lr schedule; halving: Sutskever 2014, halve every `halve_every` after `halve_after`",
        choices=("cosine", "constant", "halving"),
    )
    warmup_steps: int = key(100, "linear warmup steps (cosine and constant schedules)", ge=0)
    min_lr_ratio: float = key(0.1, "final lr / peak lr of the cosine schedule", ge=0, le=1)
    halve_after: int = key(0, "steps before the first halving (halving schedule)", ge=0)
    halve_every: int = key(0, "steps between halvings (halving schedule)", ge=0)
    grad_clip: float = key(1.0, "max global gradient norm; 0 disables clipping", ge=0)
    label_smoothing: float = key(0.1, "label smoothing of the cross-entropy loss", ge=0, lt=1)


@dataclass
class TrainConfig:
    max_steps: int = key(1000, "optimiser steps of the run", gt=0)
    val_every: int = key(200, "steps between validations (and checkpoints)", gt=0)
    val_batches: int = key(0, "validation batches per validation (0 = the whole validation split)", ge=0)
    log_every: int = key(10, "steps between logged training metrics", gt=0)
    precision: str = key("32-true", "Lightning precision (16-mixed needs a GPU)", choices=PRECISIONS)
    accelerator: str = key(
        "auto", "device type (auto: a GPU if there is one)", choices=("auto", "cpu", "gpu", "cuda")
    )
    devices: int = key(1, "processes (CPU) or GPUs per node", gt=0)
    num_nodes: int = key(1, "nodes (SLURM sets the rest)", gt=0)
    strategy: str = key("auto", "distribution strategy", choices=("auto", "ddp", "deepspeed"))
    zero_stage: int = key(2, "DeepSpeed ZeRO stage (deepspeed only)", choices=(1, 2, 3))
    offload_optimizer: bool = key(False, "DeepSpeed: optimiser state in CPU memory (deepspeed only)")
    deepspeed_config: str | None = key(
        None, "JSON merged over the generated DeepSpeed config (deepspeed only)"
    )
    accumulate: int = key(1, "micro-batches per optimiser step", gt=0)
    deterministic: bool = key(False, "torch deterministic algorithms (slower)")
    compile: str = key(
        "none",
        "torch.compile the training forward: none (eager), model (the whole model), auto (where measured to "
        "pay: pipeline/training/compile.py); a model that cannot compile warns once and trains eager",
        choices=("none", "model", "auto"),
    )
    grad_reach_every: int = key(0, "steps between gradient-norm-by-position measurements (0 = off)", ge=0)
    ckpt_every: int = key(0, "steps between checkpoints (0 = every val_every); preemption also saves", ge=0)
    keep_checkpoints: int = key(2, "newest step checkpoints kept besides last.ckpt", ge=0)
    max_nonfinite_steps: int = key(
        0, "steps with a NaN/inf loss skipped (gradients dropped) before the run stops with an error", ge=0
    )
    bleu_samples: int = key(200, "test pairs decoded for BLEU/chrF at the end of `train` (0 = skip)", ge=0)
    decode_max_len: int = key(128, "max tokens of a decoded translation", gt=0)
    beam: int = key(1, "beam width of the decoding at the end of `train` (1 = greedy)", gt=0)
    length_penalty: float = key(
        0.6, "beam search: score / ((5 + length) / 6) ** this (GNMT); beam > 1 only", ge=0.0
    )


@dataclass
class LoggingConfig:
    wandb: bool = key(True, "log to Weights & Biases")
    wandb_mode: str = key("offline", "W&B mode", choices=("offline", "online", "disabled"))
    project: str = key("pipeline", "W&B project")
    entity: str | None = key(None, "W&B entity (team or user; default: yours)")
    group: str | None = key(None, "W&B group (a sweep sets its grid name, so its runs sit together)")
    progress_bar: bool = key(True, "Lightning progress bar")


@dataclass
class RunConfig:
    name: str = key("run", "run name (W&B name, default run directory)")
    run_dir: str | None = key(None, "checkpoints, logs and resolved config (default: runs/<name>)")
    seed: int = key(1234, "seed of the model init and the data order", ge=0, lt=2**32)
    arm: str | None = key(
        None, "sweep arm label (a grid's archs.<label>): the result record's arch; default model.arch"
    )
    model: dict[str, Any] = section(
        lambda: {"arch": "transformer"}, "architecture and its keys (model.arch picks the registry entry)"
    )
    data: DataConfig = section(DataConfig, "data")
    optim: OptimConfig = section(OptimConfig, "optimiser")
    train: TrainConfig = section(TrainConfig, "trainer")
    logging: LoggingConfig = section(LoggingConfig, "logging")

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a PyYAML error: its problem and 1-based line/column (its str() spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or str(err).splitlines()[0]}{where}"


REPO = Path(__file__).resolve().parents[1]  # the repository: `configs/` ships beside the package


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
        values = (json.loads(text) if is_json else yaml.load(text, YAML_LOADER)) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{what}: {path} is not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}"
        ) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: {path} is not valid YAML: {_yaml_problem(err)}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{what}: {path}: top level must be a mapping of keys, got {type(values).__name__}")
    return values


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
        return key_.strip(), yaml.load(raw, YAML_LOADER) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {_yaml_problem(err)}") from err


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
    check_model(cfg.model)
    from pipeline.models import model_config  # torch-only import, deferred so `pipeline submit` stays light

    task = model_task(cfg.data)
    try:
        built = model_config(**{**cfg.model, "vocab_size": cfg.data.vocab_size, "task": task})
    except (TypeError, ValueError) as err:
        why = " (data.task=lm builds a decoder-only model: no source side)" if task == "lm" else ""
        raise ConfigError(f"model: {err}{why}") from err
    check_position_table(cfg.data, getattr(built, "max_len", None))


def model_task(data: DataConfig) -> str:
    """The model's `task` follows the data's: one key (`data.task`) chooses it."""
    return "lm" if data.task == "lm" else "seq2seq"


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
