"""A sweep directory: every ``<run>/result.json`` under it, and the grid's run list in ``plan.json``; or run
directories given one by one (`pipeline train` makes them; each holds its own ``result.json``).

`pipeline sweep` writes ``plan.json`` (every run of the grid) before it starts; a run directory gets its
``result.json`` when the run finishes (the trainer, whoever started it). Read once per report: the fit and every
section use what this returns, and find each run's other files through `LoadedSweep.run_dirs`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.scaling.records.json_file import read_json
from pipeline.scaling.records.run_dir import RESULT_FILE
from pipeline.scaling.records.run_record import RunRecord, load_record

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"  # `pipeline sweep` lists every run of the grid here
# measured mean target tokens per batch per data stream (`pipeline sweep`), so a re-plan reads no epoch
TOKENS_CACHE = "tokens_per_batch.json"


@dataclass(frozen=True)
class LoadedSweep:
    records: list[RunRecord]
    skipped: list[str]  # run directories without a result.json (unfinished or failed runs)
    planned: list[str] | None = None  # every run name of the grid's plan.json; None without one
    run_dirs: dict[str, Path] = field(
        default_factory=dict
    )  # run name -> the directory holding its result.json


# what the scaling commands read: a sweep directory, one run directory, or several run directories
Source = str | Path | Sequence[str | Path]


def _paths(source: Source) -> list[Path]:
    return [Path(source)] if isinstance(source, str | Path) else [Path(p) for p in source]


def source_dir(source: Source) -> Path:
    """The sweep directory, or for run directories given one by one the directory that holds them all (where
    the report goes unless told otherwise)."""
    paths = _paths(source)
    if len(paths) == 1:
        return paths[0]
    return Path(os.path.commonpath([p.resolve() for p in paths]))


def read_plan(sweep_dir: str | Path) -> list[str] | None:
    """The run names of ``SWEEP_DIR/plan.json``, or None when the sweep has none (not made by `pipeline sweep`)."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        return None
    plan = read_json(path)
    try:
        return [r["name"] for r in plan["runs"]]
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: not a plan (expected {{'runs': [{{'name': ...}}, ...]}}): {e}") from e


def load_sweep(source: Source) -> LoadedSweep:
    """Read every ``<run>/result.json`` under a sweep directory (runs without one are listed in ``skipped``) and
    its ``plan.json``, if any; or the ``result.json`` of each run directory given (one that has none is an
    error: it names no run to report)."""
    paths = _paths(source)
    for path in paths:
        if not path.is_dir():
            kind = "sweep directory" if len(paths) == 1 else "run directory"
            raise FileNotFoundError(f"{kind} not found: {path}")
    single_sweep = len(paths) == 1 and not (paths[0] / RESULT_FILE).is_file()
    if single_sweep:
        # not the hidden caches beside the runs (`.floors/` of the count floors)
        run_dirs = sorted(p for p in paths[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        run_dirs = paths
        for path in paths:
            if not (path / RESULT_FILE).is_file():
                raise FileNotFoundError(f"{path}: no {RESULT_FILE} (not a finished run directory)")
    records, skipped, where = [], [], {}
    for run_dir in run_dirs:
        result = run_dir / RESULT_FILE
        if result.is_file():
            records.append(load_record(result))
            where[records[-1].run] = run_dir
        else:
            skipped.append(run_dir.name)
    names = [r.run for r in records]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{source_dir(source)}: run names appear in more than one result.json: {dupes}")
    return LoadedSweep(records, skipped, read_plan(paths[0]) if single_sweep else None, where)


def load_records(sweep_dir: Source) -> list[RunRecord]:
    """All finished runs of a sweep; logs how many run directories had no result.json yet."""
    loaded = load_sweep(sweep_dir)
    if loaded.skipped:
        log.warning(
            "%s: skipped %d run(s) without %s: %s",
            sweep_dir,
            len(loaded.skipped),
            RESULT_FILE,
            ", ".join(loaded.skipped),
        )
    return loaded.records
