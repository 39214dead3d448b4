"""A sweep directory: every ``<run>/result.json`` under it, and the grid's run list in ``plan.json``.

`pipeline sweep` writes ``plan.json`` (every run of the grid) before it starts; a run directory gets its
``result.json`` when the run finishes. Read once per report: the fit and every section use what this returns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.scaling.records.run_record import RESULT_FILE, RunRecord, load_record

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"  # `pipeline sweep` lists every run of the grid here


@dataclass(frozen=True)
class LoadedSweep:
    records: list[RunRecord]
    skipped: list[str]  # run directories without a result.json (unfinished or failed runs)
    planned: list[str] | None = None  # every run name of the grid's plan.json; None without one


def read_plan(sweep_dir: str | Path) -> list[str] | None:
    """The run names of ``SWEEP_DIR/plan.json``, or None when the sweep has none (not made by `pipeline sweep`)."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return [r["name"] for r in json.loads(path.read_text())["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a plan (expected {{'runs': [{{'name': ...}}, ...]}}): {e}") from e


def load_sweep(sweep_dir: str | Path) -> LoadedSweep:
    """Read every ``<run>/result.json`` under ``sweep_dir`` (runs without one are listed in ``skipped``) and its
    ``plan.json``, if any."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory not found: {sweep_dir}")
    records, skipped = [], []
    for run_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        result = run_dir / RESULT_FILE
        if result.is_file():
            records.append(load_record(result))
        else:
            skipped.append(run_dir.name)
    names = [r.run for r in records]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{sweep_dir}: run names appear in more than one result.json: {dupes}")
    return LoadedSweep(records, skipped, read_plan(sweep_dir))


def load_records(sweep_dir: str | Path) -> list[RunRecord]:
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
