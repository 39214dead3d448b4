"""Scaling-grid files (`configs/sweeps/*.yaml`) and the runs they expand to: what `pipeline sweep` trains.

A grid names base config files, shared overrides (`set`), per-architecture model keys and sizes, and token budgets.
A token budget becomes a step count: `max_steps = ceil(budget / tokens_per_step)` rounded up to a multiple of the
validation interval (so the last step is validated), where `tokens_per_step` is the mean number of target tokens per
batch over one epoch of the run's own train loader (times ranks and accumulation). The loader is seeded and
model-independent, so every run of one budget sees the same batches. The cosine schedule, warmup (`warmup_frac` of
the steps) and validation interval are set from that length. For the memory tasks (`data.task: mqar | copy`) a
batch's tokens are all the tokens of its sequences (not only the scored answers): MQAR's sequences have the fixed
length L, so a budget is `steps x sequences per batch x L`, the same number of sequences at every N of one L.

`step_budgets:` instead of `token_budgets:` gives each run that many optimizer steps, measuring nothing: for a
memory grid whose cells differ in L, the same number of sequences in every cell (Zoology trains every cell on the
same examples); run names then carry e.g. `20ksteps` where a token grid has `1M`.

`cells:` crosses data settings with archs x sizes x lrs x seeds: `{label: {dotted key: value}}`, e.g.
`{N4: {data.mqar.n_pairs: 4}, N8: {data.mqar.n_pairs: 8}}`. A cell's keys are checked like `set` and applied
after it (and after the arm's `set`); each cell gets its own prepared data, `<data.dir>-<label>`, unless it sets
`data.dir`; its label goes into run names after the size: `lstm-d32-N8-1M-lr0.003-s1`. An arm's `cells: [labels]`
runs it at those cells only (e.g. one solver check at one cell).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import (
    ConfigError,
    ConfigWarning,
    load_config,
    load_mapping,
    memory_spec_of,
    reject_unknown,
)
from pipeline.scaling.records.run_dir import RESULT_FILE
from pipeline.scaling.records.sweep_dir import PLAN_FILE, TOKENS_CACHE
from pipeline.sweep.grid_checks import (
    SweepError,
    arm_cells,
    check_cell_sizes,
    check_model_keys,
    check_set,
    config_path,
    is_count,
    mapping,
    numbers,
    parse_cells,
)

GRID_KEYS = {"name", "out", "base", "set", "archs", "token_budgets", "step_budgets", "warmup_frac", "evals_per_run",
             "delete_checkpoints", "seeds", "seed_sizes", "lrs", "replicate_best_lr", "cells"}  # fmt: skip
ARCH_KEYS = {"arch", "model", "set", "sizes", "lrs", "cells"}


@dataclass
class Grid:
    name: str
    path: Path
    base: list[str]
    # arm label -> {"arch": registry name, "model": {...}, "set": {...}, "sizes": {name: {model keys}}, "lrs": [...]}
    archs: dict[str, dict[str, Any]]
    token_budgets: list[int]  # the budgets: tokens, or optimizer steps where `steps_budget`
    overrides: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    warmup_frac: float = 0.05
    evals_per_run: int = 4
    delete_checkpoints: bool = False
    seeds: list[int] = field(default_factory=list)  # empty: the base config's seed, no suffix in run names
    seed_sizes: int | None = None  # extra seeds only at this many of each arch's largest sizes (None: all)
    lrs: list[float] = field(default_factory=list)  # learning rates scanned at every size (per arch: `lrs`)
    replicate_best_lr: bool = False  # later seeds only at each size's best rate (chosen on the first)
    # data cells crossed with archs x sizes x lrs x seeds: label -> {dotted key: value} (grid_checks.parse_cells)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    cell_sizes: dict[str, list[str]] = field(default_factory=dict)  # a cell's `sizes:`: it runs at those only
    steps_budget: bool = False  # the grid gave `step_budgets:` (each budget a step count, nothing measured)


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
    cell: str | None = None  # the `cells:` label, None for a grid without cells


def load_grid(path: str | Path) -> Grid:
    """Parse and check a grid file; every error names the file and the key."""
    path = Path(path)
    try:
        raw = load_mapping(path, "grid file")
    except ConfigError as err:
        raise SweepError(str(err)) from err
    reject_unknown(raw, sorted(GRID_KEYS), str(path), error=SweepError)
    if ("token_budgets" in raw) == ("step_budgets" in raw):
        raise SweepError(f"{path}: give exactly one of the keys 'token_budgets' and 'step_budgets'")
    budget_key = "token_budgets" if "token_budgets" in raw else "step_budgets"
    if "archs" not in raw:
        raise SweepError(f"{path}: missing key 'archs'")
    base = [raw["base"]] if isinstance(raw.get("base"), str) else raw.get("base") or []
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base):
        raise SweepError(f"{path}: key 'base' must list config files, got {base!r}")
    base = [config_path(path, b) for b in base]
    budgets = raw[budget_key]
    if not isinstance(budgets, list) or not budgets or not all(is_count(b) for b in budgets):
        bad = next((b for b in budgets if not is_count(b)), budgets) if isinstance(budgets, list) else budgets
        raise SweepError(f"{path}: key '{budget_key}' holds {bad!r}; expected a list of positive integers")
    archs = mapping(raw["archs"], f"{path}: key 'archs'")
    if not archs:
        raise SweepError(f"{path}: key 'archs' is empty")
    from pipeline.models.configs import CONFIGS  # the architectures' names (no torch)

    for label, spec in archs.items():
        where = f"{path}: key 'archs.{label}'"
        spec = mapping(spec, where)
        reject_unknown(spec, sorted(ARCH_KEYS), where, error=SweepError)
        arch = spec.get("arch", label)  # an arm: two entries of one architecture under their own labels
        if arch not in CONFIGS:
            key_ = f"{path}: key 'archs.{label}.arch'" if "arch" in spec else where
            raise SweepError(f"{key_}: unknown architecture {arch!r}; known: {', '.join(sorted(CONFIGS))}"
                             + ("" if "arch" in spec else f" (or set archs.{label}.arch to one)"))  # fmt: skip
        if not isinstance(label, str) or not label.replace("_", "").replace("-", "").isalnum():
            raise SweepError(f"{where}: an arm label is letters, digits, '_' and '-' (it starts run names)")
        sizes = mapping(spec.get("sizes"), f"{where}.sizes")
        if not sizes:
            raise SweepError(f"{where}.sizes: at least one size (name: {{model keys}}) is needed")
        model = mapping(spec.get("model"), f"{where}.model")
        check_model_keys(arch, model, f"{path}: key 'archs.{label}.model'")
        arm_set = mapping(spec.get("set"), f"{where}.set")
        check_set(arm_set, f"{path}: key 'archs.{label}.set'", arch)
        for size, keys in sizes.items():
            size_where = f"{path}: key 'archs.{label}.sizes.{size}'"
            check_model_keys(arch, mapping(keys, size_where), size_where)
        archs[label] = {"arch": arch, "model": model, "set": arm_set, "sizes": sizes,
                       "lrs": numbers(spec.get("lrs"), f"{where}.lrs", float), "cells": spec.get("cells")}  # fmt: skip
    overrides = mapping(raw.get("set"), f"{path}: key 'set'")
    for spec in archs.values():  # grid-wide `model.*` keys must suit every architecture they reach
        check_set(overrides, f"{path}: key 'set'", spec["arch"])
    cells, cell_sizes = parse_cells(raw.get("cells"), path, [spec["arch"] for spec in archs.values()])
    grid = Grid(
        name=str(raw.get("name") or path.stem), path=path, base=base, archs=archs,
        token_budgets=[int(b) for b in budgets], overrides=overrides,
        out=raw.get("out"), warmup_frac=float(raw.get("warmup_frac", 0.05)),
        evals_per_run=int(raw.get("evals_per_run", 4)), delete_checkpoints=bool(raw.get("delete_checkpoints", False)),
        seeds=numbers(raw.get("seeds"), f"{path}: key 'seeds'", int), lrs=numbers(raw.get("lrs"), f"{path}: key 'lrs'", float),
        seed_sizes=raw.get("seed_sizes"), replicate_best_lr=raw.get("replicate_best_lr", False),
        cells=cells, cell_sizes=cell_sizes,
        steps_budget=budget_key == "step_budgets",
    )  # fmt: skip
    for label, spec in archs.items():  # an arm's `cells:` runs it at those of the grid's cells only
        spec["cells"] = arm_cells(spec["cells"], grid.cells, f"{path}: key 'archs.{label}.cells'")
    check_cell_sizes(grid.cell_sizes, archs, path)
    if not isinstance(grid.replicate_best_lr, bool):
        bad = grid.replicate_best_lr
        raise SweepError(f"{path}: key 'replicate_best_lr' must be true or false, got {bad!r}")
    if grid.seed_sizes is not None and not (is_count(grid.seed_sizes) and isinstance(grid.seed_sizes, int)):
        raise SweepError(f"{path}: key 'seed_sizes' must be a positive integer, got {grid.seed_sizes!r}")
    if not 0 <= grid.warmup_frac < 1:
        raise SweepError(f"{path}: key 'warmup_frac' must be in [0, 1), got {grid.warmup_frac}")
    if grid.evals_per_run < 1:
        raise SweepError(f"{path}: key 'evals_per_run' must be >= 1, got {grid.evals_per_run}")
    return grid


def grid_unit(grid: Grid) -> str:
    """What the grid's budgets count: "tokens" or "steps"."""
    return "steps" if grid.steps_budget else "tokens"


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
    cells = list(grid.cells.items()) or [(None, {})]
    for budget, rank, (cell, cell_set) in (
        (b, k, c) for b in sorted(grid.token_budgets) for k in range(max_sizes) for c in cells
    ):
        for arch, spec in grid.archs.items():
            sizes = list(spec["sizes"].items())
            if rank >= len(sizes) or (cell is not None and cell not in spec["cells"]):
                continue
            size, keys = sizes[rank]
            if cell is not None and size not in grid.cell_sizes.get(cell, [size]):
                continue
            top = grid.seed_sizes is None or rank >= len(sizes) - grid.seed_sizes
            seeds = grid.seeds if top else grid.seeds[:1]
            lrs = spec["lrs"] or grid.lrs
            replicate = grid.replicate_best_lr and len(lrs) > 1 and len(seeds) > 1
            best = _best_first_seed_lr(grid, arch, size, cell, lrs, sweep_dir) if replicate else None
            for lr, seed in [(lr, seed) for lr in lrs or [None] for seed in seeds or [None]]:
                if replicate and seed != seeds[0] and lr != best:
                    if best is None and lr == lrs[0]:  # one waiting run per seed, not one per rate
                        point_name = f"{arch}-{size}" + ("" if cell is None else f"-{cell}")
                        why = (f"its rate is the best of {point_name}'s first-seed runs at "
                               f"{max(grid.token_budgets):,} {grid_unit(grid)}, not all finished")  # fmt: skip
                        runs.append(PlannedRun(_run_name(grid, arch, size, cell, budget, None, seed, lrs), [],
                                               [], arch, size, budget, seed=seed, waiting=why, cell=cell))  # fmt: skip
                    continue
                name = _run_name(grid, arch, size, cell, budget, lr, seed, lrs)
                point = {"seed": seed, "optim.lr": lr, "logging.group": grid.name}
                run = _planned(grid, arch, spec, size, keys, budget, name, sweep_dir, {**cell_set, **point})
                run.seed, run.lr, run.cell = seed, lr, cell
                cfg = _run_config(grid, run)
                if cell is not None and "data.dir" not in cell_set:  # each cell its own prepared data
                    run.overrides.insert(-2, f"data.dir={json.dumps(f'{cfg.data.dir}-{cell}')}")
                    cfg = _run_config(grid, run)
                _set_length(run, cfg, grid, world, cache, measure)
                runs.append(run)
    cache.save()
    return runs


def _run_name(grid: Grid, arch: str, size: str, cell: str | None, budget: int, lr: float | None,
              seed: int | None, lrs: list[float]) -> str:  # fmt: skip
    """`arch-size[-cell]-budget[-lr<rate>][-s<seed>]`; a waiting run's rate is not known yet: `-lrbest`."""
    label = _budget_label(budget) + ("steps" if grid.steps_budget else "")
    name = f"{arch}-{size}{'' if cell is None else f'-{cell}'}-{label}"
    name += ("-lrbest" if lr is None else f"-lr{lr:g}") if len(lrs) > 1 else ""
    return name + (f"-s{seed}" if len(grid.seeds) > 1 else "")


def _best_first_seed_lr(grid: Grid, arch: str, size: str, cell: str | None, lrs: list[float],
                        sweep_dir: Path) -> float | None:  # fmt: skip
    """The rate `pipeline.scaling.analyses.lr_scan.select_best_lr` (the fits' own rule: lowest final validation
    loss) picks from the first-seed runs of (arch, size, cell) at the grid's largest budget (for a memory task the
    capacity law's: highest answer accuracy, `fits.capacity_law.best_over_rates`), or None while any of those
    runs has no record. The records are read by name: no search."""
    from pipeline.scaling.analyses.lr_scan import select_best_lr
    from pipeline.scaling.records.run_record import load_record

    records, budget, seed = [], max(grid.token_budgets), grid.seeds[0]
    for lr in lrs:
        path = sweep_dir / _run_name(grid, arch, size, cell, budget, lr, seed, lrs) / RESULT_FILE
        if not path.is_file():
            return None
        try:
            # the rate and seed are the ones the name was planned with (records older than those keys lack them)
            records.append(replace(load_record(path), lr=lr, seed=seed))
        except (OSError, ValueError) as err:
            raise SweepError(f"unreadable record ({err}); delete {path} to rerun that run") from err
    task = records[0].answer_metrics.get("task")
    if task in ("mqar", "copy"):  # a memory task: the capacity law's own rule (report: analyses/capacity.py)
        from pipeline.scaling.fits.capacity_law import best_over_rates

        return best_over_rates({r.lr: _memory_score(r) for r in records}).best_lr
    _, scan = select_best_lr(records)
    return next(iter(scan.best.values()))


def _memory_score(record: Any) -> float:
    """MQAR: answer accuracy; copy: exact match averaged over the scored lengths (the report picks one rate per
    width by it)."""
    m = record.answer_metrics
    rows = [row for row in m.get("by_length", []) if row.get("strings")]
    if m["task"] == "copy" and rows:
        return sum(row["exact_match"] for row in rows) / len(rows)
    return float(m["accuracy"])


def write_plan(grid: Grid, sweep_dir: Path, runs: list[PlannedRun]) -> None:
    """`SWEEP_DIR/plan.json`: every run of the grid with its steps (the report's "N of M runs")."""
    from pipeline.scaling.records.json_file import save_json_atomic

    budget = "step_budget" if grid.steps_budget else "token_budget"
    plan = [{"name": r.name, "arch": r.arch, "size": r.size, budget: r.budget, "max_steps": r.max_steps,
             "seed": r.seed, "lr": r.lr, **({"cell": r.cell} if r.cell is not None else {}),
             **({"waiting": r.waiting} if r.waiting else {})} for r in runs]  # fmt: skip
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
    """Token budget -> steps, validation interval and warmup, appended to the run's overrides (before run_dir).
    A step budget is the steps themselves (rounded up to a multiple of `evals_per_run`)."""
    if grid.steps_budget:
        per_step = 1.0
    else:
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
