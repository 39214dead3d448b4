"""The optional files of a sweep's runs, each read at most once: per-token losses, gradient reach, summary.json.

One `RunFiles` is shared by the fit and every analysis of a report, so the report reads each run's
``valid_token_losses.npz`` once however many analyses use it. A plain directory works too: every analysis that
takes a `RunFiles` also takes a path (`run_files_of`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.scaling.records.grad_reach_file import read_grad_rows
from pipeline.scaling.records.token_losses import TokenLosses, load_token_losses

SUMMARY_FILE = "summary.json"  # the run's final evaluation (BLEU, ...), written by the trainer


class RunFiles:
    def __init__(self, sweep_dir: str | Path) -> None:
        self.sweep_dir = Path(sweep_dir)
        self._tokens: dict[str, TokenLosses | None] = {}
        self._grads: dict[str, list[dict[str, Any]] | None] = {}
        self._summaries: dict[str, dict[str, Any]] = {}

    def token_losses(self, run: str) -> TokenLosses | None:
        """``<run>/valid_token_losses.npz`` (checked), or None when the run has none."""
        if run not in self._tokens:
            self._tokens[run] = load_token_losses(self.sweep_dir / run)
        return self._tokens[run]

    def grad_rows(self, run: str) -> list[dict[str, Any]] | None:
        """``<run>/grad_by_position.jsonl`` rows, or None when the run has none."""
        if run not in self._grads:
            self._grads[run] = read_grad_rows(self.sweep_dir / run)
        return self._grads[run]

    def summary(self, run: str) -> dict[str, Any]:
        """``<run>/summary.json`` as written, {} when the run has none."""
        if run not in self._summaries:
            path = self.sweep_dir / run / SUMMARY_FILE
            self._summaries[run] = json.loads(path.read_text()) if path.is_file() else {}
        return self._summaries[run]


def run_files_of(source: str | Path | RunFiles) -> RunFiles:
    """``source`` itself, or a fresh reader of the sweep directory it names."""
    return source if isinstance(source, RunFiles) else RunFiles(source)
