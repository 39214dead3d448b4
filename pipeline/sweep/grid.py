"""Scaling-grid files (`configs/sweeps/*.yaml`) and the runs they expand to: what `pipeline sweep` trains.

A grid names base config files, shared overrides (`set`), per-architecture model keys and sizes, and token budgets.
A token budget becomes a step count: `max_steps = ceil(budget / tokens_per_step)` rounded up to a multiple of the
validation interval (so the last step is validated), where `tokens_per_step` is the mean number of target tokens per
batch over one epoch of the run's own train loader (times ranks and accumulation). The loader is seeded and
model-independent, so every run of one budget sees the same batches. The cosine schedule, warmup (`warmup_frac` of
the steps) and validation interval are set from that length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, load_config, load_mapping, reject_unknown
from pipeline.data.prepare import ensure_prepared
from pipeline.models import MODEL_REGISTRY

GRID_KEYS = {"name", "out", "base", "set", "archs", "token_budgets", "warmup_frac", "evals_per_run",
             "delete_checkpoints"}  # fmt: skip
ARCH_KEYS = {"model", "set", "sizes"}


class SweepError(ConfigError):
    """A bad grid file or sweep directory; the message names the file and key."""


@dataclass
class Grid:
    name: str
    path: Path
    base: list[str]
    archs: dict[str, dict[str, Any]]  # arch -> {"model": {...}, "set": {...}, "sizes": {name: {model keys}}}
    token_budgets: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    warmup_frac: float = 0.05
    evals_per_run: int = 4
    delete_checkpoints: bool = False


@dataclass
class PlannedRun:
    name: str
    configs: list[str]
    overrides: list[str]  # key=value, run_dir= last
    arch: str
    size: str
    budget: int
    max_steps: int = 0


# ------------------------------------------------------------------------------------------------- grid file
def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a mapping, got {value!r}")
    return value


def _count(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x > 0 and float(x) == int(x)


def load_grid(path: str | Path) -> Grid:
    """Parse and check a grid file; every error names the file and the key."""
    path = Path(path)
    try:
        raw = load_mapping(path, "grid file")
    except ConfigError as err:
        raise SweepError(str(err)) from err
    reject_unknown(raw, sorted(GRID_KEYS), str(path), error=SweepError)
    for key in ("archs", "token_budgets"):
        if key not in raw:
            raise SweepError(f"{path}: missing key {key!r}")
    base = [raw["base"]] if isinstance(raw.get("base"), str) else raw.get("base") or []
    if not isinstance(base, list) or not all(isinstance(b, str) and Path(b).is_file() for b in base):
        raise SweepError(f"{path}: key 'base' must list existing config files, got {base!r}")
    budgets = raw["token_budgets"]
    if not isinstance(budgets, list) or not budgets or not all(_count(b) for b in budgets):
        bad = next((b for b in budgets if not _count(b)), budgets) if isinstance(budgets, list) else budgets
        raise SweepError(f"{path}: key 'token_budgets' holds {bad!r}; expected a list of positive integers")
    archs = _mapping(raw["archs"], f"{path}: key 'archs'")
    if not archs:
        raise SweepError(f"{path}: key 'archs' is empty")
    for arch, spec in archs.items():
        where = f"{path}: key 'archs.{arch}'"
        if arch not in MODEL_REGISTRY:
            raise SweepError(f"{where}: unknown architecture; known: {', '.join(sorted(MODEL_REGISTRY))}")
        spec = _mapping(spec, where)
        reject_unknown(spec, sorted(ARCH_KEYS), where, error=SweepError)
        sizes = _mapping(spec.get("sizes"), f"{where}.sizes")
        if not sizes:
            raise SweepError(f"{where}.sizes: at least one size (name: {{model keys}}) is needed")
        for size, keys in sizes.items():
            _mapping(keys, f"{where}.sizes.{size}")
        archs[arch] = {"model": _mapping(spec.get("model"), f"{where}.model"),
                       "set": _mapping(spec.get("set"), f"{where}.set"), "sizes": sizes}  # fmt: skip
    grid = Grid(
        name=str(raw.get("name") or path.stem), path=path, base=base, archs=archs,
        token_budgets=[int(b) for b in budgets], overrides=_mapping(raw.get("set"), f"{path}: key 'set'"),
        out=raw.get("out"), warmup_frac=float(raw.get("warmup_frac", 0.05)),
        evals_per_run=int(raw.get("evals_per_run", 4)), delete_checkpoints=bool(raw.get("delete_checkpoints", False)),
    )  # fmt: skip
    if not 0 <= grid.warmup_frac < 1:
        raise SweepError(f"{path}: key 'warmup_frac' must be in [0, 1), got {grid.warmup_frac}")
    if grid.evals_per_run < 1:
        raise SweepError(f"{path}: key 'evals_per_run' must be >= 1, got {grid.evals_per_run}")
    return grid


def _budget_label(tokens: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if tokens % div == 0:
            return f"{tokens // div}{unit}"
    return str(tokens)


def _kv(values: dict[str, Any]) -> list[str]:
    """{key: value} -> ["key=value"] with JSON values (JSON is YAML, which `parse_override` reads)."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def plan_runs(grid: Grid, sweep_dir: Path, world: int = 1) -> list[PlannedRun]:
    """Every run of the grid with its final config overrides; checks each config (errors name the run and key).

    Order: budgets ascending, then size rank, then architecture, so a sweep cut short has the whole cheap end of
    the grid for every architecture rather than one architecture's whole grid."""
    runs, per_batch = [], {}
    max_sizes = max(len(a["sizes"]) for a in grid.archs.values())
    for budget in sorted(grid.token_budgets):
        for rank in range(max_sizes):
            for arch, spec in grid.archs.items():
                sizes = list(spec["sizes"].items())
                if rank >= len(sizes):
                    continue
                size, keys = sizes[rank]
                name = f"{arch}-{size}-{_budget_label(budget)}"
                model = {"arch": arch, **spec["model"], **keys}
                overrides = [*_kv(grid.overrides), *_kv(spec["set"]), f"model={json.dumps(model)}",
                             f"name={name}", f"run_dir={sweep_dir / name}"]  # fmt: skip
                try:
                    cfg = load_config(grid.base, overrides)
                except ConfigError as err:
                    raise SweepError(f"{grid.path}: run {name}: {err}") from err
                run = PlannedRun(name, list(grid.base), overrides, arch, size, budget)
                _set_length(run, cfg, grid, world, per_batch)
                runs.append(run)
    return runs


def _set_length(run: PlannedRun, cfg: Any, grid: Grid, world: int, cache: dict) -> None:
    """Token budget -> steps, validation interval and warmup, appended to the run's overrides (before run_dir)."""
    d = cfg.data
    key = (d.dir, d.batch_tokens, d.max_len, d.bucket_size, cfg.seed)
    if key not in cache:
        cache[key] = mean_tokens_per_batch(cfg)
    per_step = cache[key] * world * cfg.train.accumulate
    val_every = max(1, math.ceil(run.budget / per_step / grid.evals_per_run))
    run.max_steps = val_every * grid.evals_per_run
    extra = {"train.max_steps": run.max_steps, "train.val_every": val_every,
             "optim.warmup_steps": max(1, round(grid.warmup_frac * run.max_steps)) if grid.warmup_frac else 0}  # fmt: skip
    run.overrides[-1:-1] = _kv(extra)


def mean_tokens_per_batch(cfg: Any) -> float:
    """Mean target tokens (EOS included) per batch over one epoch of the run's own train loader, preparing the
    data first if needed. Counted, not estimated: bucketing makes the padding share depend on the length mix."""
    from pipeline.data.loader import build_loader

    d = cfg.data
    ensure_prepared(d.dir, corpus=d.corpus, vocab_size=d.vocab_size, max_len=d.max_len, limit=d.limit or None)
    loader = build_loader(d.dir, "train", batch_tokens=d.batch_tokens, max_len=d.max_len,
                          bucket_size=d.bucket_size, seed=cfg.seed)  # fmt: skip
    counts = [int(b["n_tokens"]) for b in loader]
    if not counts:
        raise SweepError(f"{d.dir}: the train split yields no batches")
    return sum(counts) / len(counts)
