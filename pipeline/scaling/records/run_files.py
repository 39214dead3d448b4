"""The optional files of a sweep's runs, each read at most once: per-token losses, gradient reach, summary.json.

One `RunFiles` is shared by the fit and every analysis of a report, so the report reads each run's
``valid_token_losses.npz`` once however many analyses use it. A plain directory works too: every analysis that
takes a `RunFiles` also takes a path (`run_files_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.scaling.records.grad_reach_file import read_grad_rows
from pipeline.scaling.records.run_dir import RESULT_FILE, read_summary
from pipeline.scaling.records.sweep_dir import Source, load_sweep, source_dir
from pipeline.scaling.records.token_losses import TokenLosses, load_token_losses


class RunFiles:
    def __init__(self, source: Source, run_dirs: dict[str, Path] | None = None) -> None:
        """`source`: a sweep directory or run directories (`sweep_dir.Source`); `run_dirs`: where each run's files
        are (`LoadedSweep.run_dirs`; read from `source` when not given), else ``<sweep_dir>/<run>``."""
        self.source = source
        self.sweep_dir = source_dir(source)
        if run_dirs is None and (
            not isinstance(source, str | Path) or (Path(source) / RESULT_FILE).is_file()
        ):
            run_dirs = load_sweep(source).run_dirs
        self.run_dirs = run_dirs or {}
        self._tokens: dict[str, TokenLosses | None] = {}
        self._grads: dict[str, list[dict[str, Any]] | None] = {}
        self._summaries: dict[str, dict[str, Any]] = {}

    def run_dir(self, run: str) -> Path:
        """The directory of `run`'s files."""
        return self.run_dirs.get(run, self.sweep_dir / run)

    def token_losses(self, run: str) -> TokenLosses | None:
        """``<run>/valid_token_losses.npz`` (checked), or None when the run has none."""
        if run not in self._tokens:
            self._tokens[run] = load_token_losses(self.run_dir(run))
        return self._tokens[run]

    def grad_rows(self, run: str) -> list[dict[str, Any]] | None:
        """``<run>/grad_by_position.jsonl`` rows, or None when the run has none."""
        if run not in self._grads:
            self._grads[run] = read_grad_rows(self.run_dir(run))
        return self._grads[run]

    def summary(self, run: str) -> dict[str, Any]:
        """``<run>/summary.json`` as written, {} when the run has none."""
        if run not in self._summaries:
            self._summaries[run] = read_summary(self.run_dir(run)) or {}
        return self._summaries[run]


def run_files_of(source: Source | RunFiles) -> RunFiles:
    """``source`` itself, or a fresh reader of the sweep directory it names."""
    return source if isinstance(source, RunFiles) else RunFiles(source)
