"""A run's gradient-reach measurements, ``<run>/grad_by_position.jsonl``: one JSON line per measurement.

Runs trained with `train.grad_reach_every` append ``{"step": int, "src": [float], "tgt": [float]}`` (||dL/dx_t||
per source and target position, for the loss of each row's last target token; pipeline/training/grad_reach.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.scaling.records.run_dir import GRAD_FILE


def read_grad_rows(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The run's measurements in file order, or None when it has no such file; a bad line raises ValueError."""
    path = Path(run_dir) / GRAD_FILE
    if not path.is_file():
        return None
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n} is not JSON: {err}") from err
    return rows
