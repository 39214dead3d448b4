"""Scaling-grid files (`configs/sweeps/*.yaml`) and the runs they expand to: what `pipeline sweep` trains.

A grid names base config files, shared overrides (`set`), per-architecture model keys and sizes, and token budgets.
A token budget becomes a step count: `max_steps = ceil(budget / tokens_per_step)` rounded up to a multiple of the
validation interval (so the last step is validated), where `tokens_per_step` is the mean number of target tokens per
batch over one epoch of the run's own train loader (times ranks and accumulation). The loader is seeded and
model-independent, so every run of one budget sees the same batches. The cosine schedule, warmup (`warmup_frac` of
the steps) and validation interval are set from that length.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import (
    ConfigError,
    ConfigWarning,
    coerce,
    config_keys,
    load_config,
    load_mapping,
    memory_spec_of,
    reject_unknown,
    shipped_path,
)
from pipeline.config.keys import check_value
from pipeline.config.model_section import check_model
from pipeline.scaling.records.run_dir import RESULT_FILE
from pipeline.scaling.records.sweep_dir import PLAN_FILE, TOKENS_CACHE

GRID_KEYS = {"name", "out", "base", "set", "archs", "token_budgets", "warmup_frac", "evals_per_run",
             "delete_checkpoints", "seeds", "seed_sizes", "lrs", "replicate_best_lr"}  # fmt: skip
ARCH_KEYS = {"arch", "model", "set", "sizes", "lrs"}


class SweepError(ConfigError):
    """A bad grid file or sweep directory; the message names the file and key."""


@dataclass
class Grid:
    name: str
    path: Path
    base: list[str]
    # arm label -> {"arch": registry name, "model": {...}, "set": {...}, "sizes": {name: {model keys}}, "lrs": [...]}
    archs: dict[str, dict[str, Any]]
    token_budgets: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    warmup_frac: float = 0.05
    evals_per_run: int = 4
    delete_checkpoints: bool = False
    seeds: list[int] = field(default_factory=list)  # empty: the base config's seed, no suffix in run names
    seed_sizes: int | None = None  # extra seeds only at this many of each arch's largest sizes (None: all)
    lrs: list[float] = field(default_factory=list)  # learning rates scanned at every size (per arch: `lrs`)
    replicate_best_lr: bool = False  # later seeds only at each size's best rate (chosen on the first)


@dataclass
class PlannedRun:
    name: str
    configs: list[str]
    overrides: list[str]  # key=value, run_dir= last
    arch: str  # the arm label (`archs.<label>`; the registry name unless the entry sets `arch:`)
    size: str
    budget: int
    max_steps: int = 0  # 0: not measured yet (a dry run before the data is prepared)
    seed: int | None = None
    lr: float | None = None
    waiting: str = ""  # why it cannot be planned yet (its rate is chosen by unfinished runs); "" when it can


# ------------------------------------------------------------------------------------------------- grid file
def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a mapping, got {value!r}")
    return value


def _config_path(grid_path: Path, name: str) -> str:
    """A `base:` file: relative to the grid file's directory, else to the current directory, else to the
    repository (the shipped grids name repo-relative paths, so `--grid /abs/path/grid.yaml` works anywhere)."""
    candidates = [Path(name)] if Path(name).is_absolute() else [grid_path.parent / name, shipped_path(name)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    tried = ", ".join(str(c) for c in candidates)
    raise SweepError(f"{grid_path}: key 'base': config file {name!r} not found (tried {tried})")


def _numbers(raw: Any, where: str, kind: type) -> list:
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


def _count(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x > 0 and float(x) == int(x)


def _check_model_keys(arch: str, model: dict[str, Any], where: str) -> None:
    """Model keys (an arm's `model`, a size's keys) against `arch`'s config dataclass, when the grid is read: a
    typo would otherwise surface only when planning reaches that run, as that one run's error."""
    try:
        check_model({**model, "arch": arch})
    except ConfigError as err:
        raise SweepError(f"{where}: {str(err).removeprefix('model: ')}") from err


def _check_set(values: dict[str, Any], where: str, arch: str) -> None:
    """`set` overrides (dotted keys, or nested mappings of them) against the run-config schema: each key known,
    its value of the key's type and in its range; `model.*` keys against `arch`."""
    specs = {s.name: s for s in config_keys() if s.name != "model"}
    sections = {name.rpartition(".")[0] for name in specs} - {""}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            dotted = f"{prefix}{name}"
            if dotted == "model" or dotted.startswith("model."):
                keys = value if dotted == "model" else {dotted.partition(".")[2]: value}
                _check_model_keys(arch, _mapping(keys, f"{where}.{dotted}"), where)
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
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base):
        raise SweepError(f"{path}: key 'base' must list config files, got {base!r}")
    base = [_config_path(path, b) for b in base]
    budgets = raw["token_budgets"]
    if not isinstance(budgets, list) or not budgets or not all(_count(b) for b in budgets):
        bad = next((b for b in budgets if not _count(b)), budgets) if isinstance(budgets, list) else budgets
        raise SweepError(f"{path}: key 'token_budgets' holds {bad!r}; expected a list of positive integers")
    archs = _mapping(raw["archs"], f"{path}: key 'archs'")
    if not archs:
        raise SweepError(f"{path}: key 'archs' is empty")
    from pipeline.models import MODEL_REGISTRY  # torch: imported only when a grid is read, not for --help

    for label, spec in archs.items():
        where = f"{path}: key 'archs.{label}'"
        spec = _mapping(spec, where)
        reject_unknown(spec, sorted(ARCH_KEYS), where, error=SweepError)
        arch = spec.get("arch", label)  # an arm: two entries of one architecture under their own labels
        if arch not in MODEL_REGISTRY:
            key_ = f"{path}: key 'archs.{label}.arch'" if "arch" in spec else where
            raise SweepError(f"{key_}: unknown architecture {arch!r}; known: {', '.join(sorted(MODEL_REGISTRY))}"
                             + ("" if "arch" in spec else f" (or set archs.{label}.arch to one)"))  # fmt: skip
        if not isinstance(label, str) or not label.replace("_", "").replace("-", "").isalnum():
            raise SweepError(f"{where}: an arm label is letters, digits, '_' and '-' (it starts run names)")
        sizes = _mapping(spec.get("sizes"), f"{where}.sizes")
        if not sizes:
            raise SweepError(f"{where}.sizes: at least one size (name: {{model keys}}) is needed")
        model = _mapping(spec.get("model"), f"{where}.model")
        _check_model_keys(arch, model, f"{path}: key 'archs.{label}.model'")
        arm_set = _mapping(spec.get("set"), f"{where}.set")
        _check_set(arm_set, f"{path}: key 'archs.{label}.set'", arch)
        for size, keys in sizes.items():
            size_where = f"{path}: key 'archs.{label}.sizes.{size}'"
            _check_model_keys(arch, _mapping(keys, size_where), size_where)
        archs[label] = {"arch": arch, "model": model, "set": arm_set, "sizes": sizes,
                       "lrs": _numbers(spec.get("lrs"), f"{where}.lrs", float)}  # fmt: skip
    overrides = _mapping(raw.get("set"), f"{path}: key 'set'")
    for spec in archs.values():  # grid-wide `model.*` keys must suit every architecture they reach
        _check_set(overrides, f"{path}: key 'set'", spec["arch"])
    grid = Grid(
        name=str(raw.get("name") or path.stem), path=path, base=base, archs=archs,
        token_budgets=[int(b) for b in budgets], overrides=overrides,
        out=raw.get("out"), warmup_frac=float(raw.get("warmup_frac", 0.05)),
        evals_per_run=int(raw.get("evals_per_run", 4)), delete_checkpoints=bool(raw.get("delete_checkpoints", False)),
        seeds=_numbers(raw.get("seeds"), f"{path}: key 'seeds'", int), lrs=_numbers(raw.get("lrs"), f"{path}: key 'lrs'", float),
        seed_sizes=raw.get("seed_sizes"), replicate_best_lr=raw.get("replicate_best_lr", False),
    )  # fmt: skip
    if not isinstance(grid.replicate_best_lr, bool):
        bad = grid.replicate_best_lr
        raise SweepError(f"{path}: key 'replicate_best_lr' must be true or false, got {bad!r}")
    if grid.seed_sizes is not None and not (_count(grid.seed_sizes) and isinstance(grid.seed_sizes, int)):
        raise SweepError(f"{path}: key 'seed_sizes' must be a positive integer, got {grid.seed_sizes!r}")
    if not 0 <= grid.warmup_frac < 1:
        raise SweepError(f"{path}: key 'warmup_frac' must be in [0, 1), got {grid.warmup_frac}")
    if grid.evals_per_run < 1:
        raise SweepError(f"{path}: key 'evals_per_run' must be >= 1, got {grid.evals_per_run}")
    return grid


def _budget_label(tokens: int) -> str:
    """`1M`, `125k`, `62500`; from 10M up, a part of a million is a decimal (`62.5M`, not `62500k`). Labels below
    10M keep their `k` form (`1500k`): they name run directories that already exist."""
    if tokens >= 10_000_000 and tokens % 100_000 == 0:
        return f"{tokens / 1_000_000:g}M"
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if tokens % div == 0:
            return f"{tokens // div}{unit}"
    return str(tokens)


def _kv(values: dict[str, Any]) -> list[str]:
    """{key: value} -> ["key=value"] with JSON values (JSON is YAML, which `parse_override` reads)."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def plan_runs(grid: Grid, sweep_dir: Path, world: int = 1, measure: bool = True) -> list[PlannedRun]:
    """Every run of the grid with its final config overrides; checks each config (errors name the run and key).

    Each (arch, size, budget) point runs at every learning rate of `lrs` (the arch's, else the grid's) and, where
    `seeds` is set, at every seed (only at the `seed_sizes` largest sizes, if given; the first seed elsewhere).
    With `replicate_best_lr`, the seeds after the first run only at the size's best rate (`_best_first_seed_lr`);
    until that is known they are planned as waiting runs (`PlannedRun.waiting`), which nothing trains.
    Order: budgets ascending, then size rank, then architecture, so a sweep cut short has the whole cheap end of
    the grid for every architecture rather than one architecture's whole grid. `measure=False` (a dry run) never
    prepares data or reads an epoch: steps come from the sweep's token cache, else stay 0 (unknown)."""
    runs = []
    cache = _TokenCache(sweep_dir / TOKENS_CACHE)
    max_sizes = max(len(a["sizes"]) for a in grid.archs.values())
    for budget in sorted(grid.token_budgets):
        for rank in range(max_sizes):
            for arch, spec in grid.archs.items():
                sizes = list(spec["sizes"].items())
                if rank >= len(sizes):
                    continue
                size, keys = sizes[rank]
                top = grid.seed_sizes is None or rank >= len(sizes) - grid.seed_sizes
                seeds = grid.seeds if top else grid.seeds[:1]
                lrs = spec["lrs"] or grid.lrs
                replicate = grid.replicate_best_lr and len(lrs) > 1 and len(seeds) > 1
                best = _best_first_seed_lr(grid, arch, size, lrs, sweep_dir) if replicate else None
                for lr, seed in [(lr, seed) for lr in lrs or [None] for seed in seeds or [None]]:
                    if replicate and seed != seeds[0] and lr != best:
                        if best is None and lr == lrs[0]:  # one waiting run per seed, not one per rate
                            why = (f"its rate is the best of {arch}-{size}'s first-seed runs at "
                                   f"{max(grid.token_budgets):,} tokens, not all finished")  # fmt: skip
                            runs.append(PlannedRun(_run_name(grid, arch, size, budget, None, seed, lrs), [], [],
                                                   arch, size, budget, seed=seed, waiting=why))  # fmt: skip
                        continue
                    name = _run_name(grid, arch, size, budget, lr, seed, lrs)
                    point = {"seed": seed, "optim.lr": lr, "logging.group": grid.name}
                    run = _planned(grid, arch, spec, size, keys, budget, name, sweep_dir, point)
                    run.seed, run.lr = seed, lr
                    _set_length(run, _run_config(grid, run), grid, world, cache, measure)
                    runs.append(run)
    cache.save()
    return runs


def _run_name(grid: Grid, arch: str, size: str, budget: int, lr: float | None, seed: int | None,
              lrs: list[float]) -> str:  # fmt: skip
    """`arch-size-budget[-lr<rate>][-s<seed>]`; a waiting run's rate is not known yet: `-lrbest`."""
    name = f"{arch}-{size}-{_budget_label(budget)}"
    name += ("-lrbest" if lr is None else f"-lr{lr:g}") if len(lrs) > 1 else ""
    return name + (f"-s{seed}" if len(grid.seeds) > 1 else "")


def _best_first_seed_lr(grid: Grid, arch: str, size: str, lrs: list[float], sweep_dir: Path) -> float | None:
    """The rate `pipeline.scaling.analyses.lr_scan.select_best_lr` (the fits' own rule) picks from the first-seed runs
    of (arch, size) at the grid's largest budget, or None while any of those runs has no record. The records are
    read by name: no search."""
    from pipeline.scaling.analyses.lr_scan import select_best_lr
    from pipeline.scaling.records.run_record import load_record

    records, budget, seed = [], max(grid.token_budgets), grid.seeds[0]
    for lr in lrs:
        path = sweep_dir / _run_name(grid, arch, size, budget, lr, seed, lrs) / RESULT_FILE
        if not path.is_file():
            return None
        try:
            # the rate and seed are the ones the name was planned with (records older than those keys lack them)
            records.append(replace(load_record(path), lr=lr, seed=seed))
        except (OSError, ValueError) as err:
            raise SweepError(f"unreadable record ({err}); delete {path} to rerun that run") from err
    _, scan = select_best_lr(records)
    return next(iter(scan.best.values()))


def write_plan(grid: Grid, sweep_dir: Path, runs: list[PlannedRun]) -> None:
    """`SWEEP_DIR/plan.json`: every run of the grid with its steps (the report's "N of M runs")."""
    from pipeline.scaling.records.json_file import save_json_atomic

    plan = [{"name": r.name, "arch": r.arch, "size": r.size, "token_budget": r.budget, "max_steps": r.max_steps,
             "seed": r.seed, "lr": r.lr, **({"waiting": r.waiting} if r.waiting else {})} for r in runs]  # fmt: skip
    save_json_atomic(sweep_dir / PLAN_FILE, {"grid": str(grid.path), "runs": plan})


def _planned(grid: Grid, arch: str, spec: dict, size: str, keys: dict, budget: int, name: str, sweep_dir: Path,
             point: dict[str, Any]) -> PlannedRun:  # fmt: skip
    model = {"arch": spec["arch"], **spec["model"], **keys}
    point = {k: v for k, v in point.items() if v is not None}
    if arch != spec["arch"]:  # the record's arch is the arm label; the config keeps the real model.arch
        point["arm"] = arch
    overrides = [*_kv(grid.overrides), *_kv(spec["set"]), *_kv(point), f"model={json.dumps(model)}",
                 f"name={name}", f"run_dir={sweep_dir / name}"]  # fmt: skip
    return PlannedRun(name, list(grid.base), overrides, arch, size, budget)


def _run_config(grid: Grid, run: PlannedRun) -> Any:
    """The run's config before its length is set: errors are the planner's, warnings the run's own (a warning
    about the base config's `max_steps` would be about a length the run never has)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfigWarning)
            return load_config(
                grid.base, run.overrides, check_gpu=False
            )  # planned anywhere, e.g. a login node
    except ConfigError as err:
        raise SweepError(f"{grid.path}: run {run.name}: {err}") from err


class _TokenCache:
    """Mean target tokens per batch, measured once per data stream and kept in the sweep directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
        self.changed = False

    def get(self, cfg: Any, measure: bool) -> float | None:
        d = cfg.data
        length = [d.max_len] if d.task == "translation" else [d.max_len, d.task, d.context, d.passage_len]
        if d.task in ("mqar", "copy"):  # the generated task's keys set its lengths
            length.append(memory_spec_of(d))
        key = json.dumps([str(d.dir), d.batch_tokens, *length, d.bucket_size, cfg.seed])
        if key not in self.values and measure:
            self.values[key] = mean_tokens_per_batch(cfg)
            self.changed = True
        return self.values.get(key)

    def save(self) -> None:
        if self.changed:
            from pipeline.scaling.records.json_file import save_json_atomic

            save_json_atomic(self.path, self.values)


def _set_length(run: PlannedRun, cfg: Any, grid: Grid, world: int, cache: _TokenCache, measure: bool) -> None:
    """Token budget -> steps, validation interval and warmup, appended to the run's overrides (before run_dir)."""
    per_batch = cache.get(cfg, measure)
    if per_batch is None:
        return  # dry run before the data was measured: steps unknown
    per_step = per_batch * world * cfg.train.accumulate
    val_every = max(1, math.ceil(run.budget / per_step / grid.evals_per_run))
    run.max_steps = val_every * grid.evals_per_run
    extra = {"train.max_steps": run.max_steps, "train.val_every": val_every,
             "optim.warmup_steps": max(1, round(grid.warmup_frac * run.max_steps)) if grid.warmup_frac else 0}  # fmt: skip
    run.overrides[-1:-1] = _kv(extra)


def mean_tokens_per_batch(cfg: Any) -> float:
    """Mean target tokens (EOS included) per batch over one epoch of the run's own train loader, preparing the
    data first if needed. Counted, not estimated: bucketing makes the padding share depend on the length mix."""
    from pipeline.data.stream.loader import build_loader
    from pipeline.training.run_data import loader_max_len, prepare_run_data

    d = cfg.data
    prepare_run_data(d)
    loader = build_loader(d.dir, "train", batch_tokens=d.batch_tokens, max_len=loader_max_len(d),
                          bucket_size=d.bucket_size, seed=cfg.seed)  # fmt: skip
    counts = [int(b["n_tokens"]) for b in loader]
    if not counts:
        raise SweepError(f"{d.dir}: the train split yields no batches")
    return sum(counts) / len(counts)
