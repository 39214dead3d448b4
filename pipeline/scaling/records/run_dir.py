"""The files of one run directory, named in one place, and the writers and readers of the small ones.

Every run file is written atomically through `json_file.write_atomic`, with the process umask. Who writes what
(docs/interfaces.md, "Run directory and sweep directory files"):

- ``config.yaml``: the resolved run config (the trainer, at the start);
- ``summary.json``: the final evaluation (the trainer, at the end of a run; `write_summary`);
- ``result.json``: the run's record for the scaling fits (`run_record`; the trainer, at the end of a run that
  reached ``train.max_steps`` or was stopped by ``train.stop_at_accuracy``, whether `pipeline train` or
  `pipeline sweep` started it);
- ``valid_token_losses.npz``: per-token validation losses (`token_losses`; each validation);
- ``grad_by_position.jsonl``: gradient reach (`grad_reach_file`; runs with ``train.grad_reach_every``);
- ``error.txt``: a failed sweep run's traceback (`write_error`; removed when the run finishes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.scaling.records.json_file import read_json, save_json_atomic, write_text_atomic

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
RESULT_FILE = "result.json"
TOKEN_LOSS_FILE = "valid_token_losses.npz"
GRAD_FILE = "grad_by_position.jsonl"
ERROR_FILE = "error.txt"


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """``<run_dir>/summary.json`` (NaN written as null)."""
    return save_json_atomic(Path(run_dir) / SUMMARY_FILE, summary)


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json`` as written, or None when it has none; a damaged file raises ValueError."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def write_error(run_dir: str | Path, text: str) -> Path:
    """``<run_dir>/error.txt``: why the run failed (a traceback)."""
    return write_text_atomic(Path(run_dir) / ERROR_FILE, text)


def clear_error(run_dir: str | Path) -> None:
    """Remove an earlier attempt's ``error.txt`` (the run has finished)."""
    (Path(run_dir) / ERROR_FILE).unlink(missing_ok=True)
