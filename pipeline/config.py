"""Run configuration: typed dataclasses, YAML files merged left to right, dotted `key=value` overrides.

Why not LightningCLI: our config spans the model registry (whose keys depend on `model.arch`), the data, the optimiser
and the cluster, and must be checked against a checkpoint's config on resume. Plain dataclasses give exact error
messages ("configs/x.yaml: unknown key 'train.max_step'; did you mean 'train.max_steps'?") and a resolved YAML that is
saved next to every run. The `model` section is a free dict here and is validated by `pipeline.models.model_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which."""


@dataclass
class DataConfig:
    dir: str = "data/bible-en-fr"  # prepared shards (made by `pipeline data prepare`, or automatically from `corpus`)
    corpus: str = "bible:4-l"  # used only when `dir` is not prepared yet: English WEB -> French Segond 1910
    vocab_size: int = 8000
    max_len: int = 128  # pairs longer than this (in BPE tokens) are dropped at prepare time
    limit: int = 0  # prepare only the first N pairs of the corpus (0 = all): tiny runs and tests
    batch_tokens: int = 4096  # padded tokens per batch per rank (src or tgt side, whichever is longer)
    num_workers: int = 1
    bucket_size: int = 2048  # samples sorted by length together, to cut padding


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    momentum: float = 0.0  # sgd only
    schedule: str = "cosine"  # cosine | constant | halving (Sutskever 2014: halve every `halve_every` after `halve_after`)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    halve_after: int = 0  # steps (halving schedule)
    halve_every: int = 0  # steps (halving schedule)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    label_smoothing: float = 0.1


@dataclass
class TrainConfig:
    max_steps: int = 1000
    val_every: int = 200  # steps between validations (and checkpoints)
    val_batches: int = 0  # 0 = the whole validation split
    log_every: int = 10
    precision: str = "32-true"  # 32-true | bf16-mixed
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | deepspeed
    zero_stage: int = 2  # deepspeed only
    offload_optimizer: bool = False  # deepspeed only
    deepspeed_config: str | None = None  # path to a user JSON that overrides the generated one
    accumulate: int = 1
    deterministic: bool = False
    grad_reach_every: int = (
        0  # steps between gradient-norm-by-position measurements (0 = off; pipeline/grad_reach.py)
    )
    ckpt_every: int = (
        0  # steps between checkpoints (0 = every val_every); a preemption signal also checkpoints
    )
    keep_checkpoints: int = 2  # newest step checkpoints kept besides last.ckpt
    bleu_samples: int = 200  # test pairs greedily decoded for BLEU/chrF at the end of `train` (0 = skip)
    decode_max_len: int = 128


@dataclass
class LoggingConfig:
    wandb: bool = True
    wandb_mode: str = "offline"  # offline | online | disabled
    project: str = "pipeline"
    entity: str | None = None
    progress_bar: bool = True


@dataclass
class RunConfig:
    name: str = "run"
    run_dir: str | None = None  # default: runs/<name>
    seed: int = 1234
    model: dict[str, Any] = field(default_factory=lambda: {"arch": "transformer"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")


# Keys whose change alters the model or the data stream: a resumed run must keep them (issue 6).
IDENTITY_KEYS = ("model", "seed", "data.dir", "data.vocab_size", "data.max_len", "data.corpus", "data.limit")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert YAML/CLI values to the annotated type, with an error naming the key."""
    origin = getattr(hint, "__origin__", None)
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where}: must not be empty (expected {text})")
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int or text.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if hint is float:
            return float(value)
        if origin is tuple:
            items = value if isinstance(value, list | tuple) else yaml.safe_load(str(value))
            return tuple(float(v) for v in items)
        if hint is str or text.startswith("str"):
            return str(value)
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot read {value!r} as {text}") from err
    return value


def _merge_section(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        where = f"{source}: key '{prefix}{key}'"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping, got {value!r}")
            _merge_section(current, value, f"{prefix}{key}.", source)
        elif key == "model" and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping, got {value!r}")
            if "arch" in value and value["arch"] != current.get("arch"):
                current = {}  # switching architecture drops the other architecture's keys
            setattr(obj, key, {**current, **value})
        else:
            setattr(obj, key, _coerce(value, hints[key], where))


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
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def config_from_dict(values: dict[str, Any], source: str = "saved config") -> RunConfig:
    """Rebuild a RunConfig from a dict (a checkpoint's or run dir's saved config), validated like a YAML file."""
    cfg = RunConfig()
    _merge_section(cfg, values, "", source)
    validate(cfg)
    return cfg


def load_config(paths: list[str | Path] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- each YAML in order <- dotted overrides. Validates model keys via the model registry."""
    cfg = RunConfig()
    for path in paths or []:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(values).__name__}")
        _merge_section(cfg, values, "", str(path))
    for text in overrides or []:
        key, value = parse_override(text)
        _merge_section(cfg, _nest(key, value), "", "command line")
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Value checks that YAML types cannot express; model keys are checked by the model registry."""
    choices = {
        "optim.name": (cfg.optim.name, ("adamw", "sgd")),
        "optim.schedule": (cfg.optim.schedule, ("cosine", "constant", "halving")),
        "train.precision": (cfg.train.precision, ("32-true", "bf16-mixed", "16-mixed", "bf16-true")),
        "train.strategy": (cfg.train.strategy, ("auto", "ddp", "deepspeed")),
        "train.accelerator": (cfg.train.accelerator, ("auto", "cpu", "gpu", "cuda")),
        "logging.wandb_mode": (cfg.logging.wandb_mode, ("offline", "online", "disabled")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    positive = {
        "train.max_steps": cfg.train.max_steps,
        "train.val_every": cfg.train.val_every,
        "train.devices": cfg.train.devices,
        "train.num_nodes": cfg.train.num_nodes,
        "train.accumulate": cfg.train.accumulate,
        "data.batch_tokens": cfg.data.batch_tokens,
        "data.vocab_size": cfg.data.vocab_size,
        "data.max_len": cfg.data.max_len,
        "optim.lr": cfg.optim.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}={value!r} must be > 0")
    if cfg.train.zero_stage not in (1, 2, 3):
        raise ConfigError(f"train.zero_stage={cfg.train.zero_stage!r} must be 1, 2 or 3")
    if "arch" not in cfg.model:
        raise ConfigError("model.arch is missing (one of the registered architectures)")
    from pipeline.models import model_config  # torch-only import, deferred so `pipeline submit` stays light

    try:
        model_config(**{**cfg.model, "vocab_size": cfg.data.vocab_size})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["optim"]["betas"] = list(cfg.optim.betas)
    return out


def save_config(cfg: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "model":
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def identity_of(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """The keys that must not change between a checkpoint and the run that resumes it."""
    flat = flatten(cfg_dict)
    return {key: flat.get(key) for key in IDENTITY_KEYS}


def config_hash(cfg_dict: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(identity_of(cfg_dict), sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences on identity keys, e.g. ["model: {'d_model': 64} -> {'d_model': 128}"]."""
    a, b = identity_of(saved), identity_of(current)
    return [f"{key}: {a[key]!r} -> {b[key]!r}" for key in IDENTITY_KEYS if a[key] != b[key]]
