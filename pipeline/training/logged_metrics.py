"""Read a run's logged metrics back from its CSV logs (standard library only: `pipeline status` stays light).

Each start of a run logs into its own `csv/version_K/metrics.csv` (see `train._loggers`); a resumed run may log a
step again that the interrupted attempt had already logged, so later versions win for a repeated step.
"""

from __future__ import annotations

import csv
from pathlib import Path


def metrics_files(run_dir: Path) -> list[Path]:
    """`csv/version_K/metrics.csv` files of a run, oldest start first (numeric K, so version_10 follows version_9)."""

    def version(path: Path) -> int:
        name = path.parent.name
        return int(name.split("_", 1)[1]) if name.startswith("version_") and name[8:].isdigit() else -1

    return sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=version)


def read_metric(run_dir: Path, column: str) -> dict[int, float]:
    """{step: value} of one logged column across all starts of a run."""
    out: dict[int, float] = {}
    for path in metrics_files(run_dir):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get(column) and row.get("step"):
                    out[int(float(row["step"]))] = float(row[column])
    return dict(sorted(out.items()))


def latest(run_dir: Path, column: str) -> tuple[int, float] | None:
    """(step, value) of the newest logged value of `column`, or None (step as logged: see `by_steps_trained`)."""
    values = read_metric(run_dir, column)
    return max(values.items()) if values else None


def by_steps_trained(values: dict[int, float]) -> dict[int, float]:
    """Re-key logged values by optimizer steps completed. Lightning logs a value produced at the end of step N
    (counting from 1) under `step` N - 1, so validation after 200 steps reads 199 in the CSV; people mean 200."""
    return {step + 1: value for step, value in values.items()}
