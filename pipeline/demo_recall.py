"""The demo's recall panel: a small LSTM and a small Transformer trained on MQAR (multi-query associative recall,
a task whose answers are known) at a few numbers of key-value pairs N, through the ordinary sweep
(`configs/sweeps/demo-recall.yaml` -> `runs/demo/recall`) and reported by the capacity-law report.

Each architecture's runs are one `pipeline sweep --only '^<arch>-'` subprocess (an "arm"), taken from one queue by
whichever of the demo's two cores frees first: the main sweep's core after its report, the showcase's core after
the showcase. So the panel fills whichever core would otherwise sit idle, and the two arms run side by side
rather than one after the other. The arms' data is generated here, in one process, before any arm starts, so no
two processes ever write one data directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pipeline.config import ConfigWarning, load_config
from pipeline.sweep.grid import Grid, load_grid, plan_runs, write_plan

POLL_S = 10  # how often a waiting core prints the other jobs' progress


class RecallPanel:
    """The recall sweep's arms as a queue of subprocesses; `work` runs arms until the queue is empty."""

    def __init__(self, grid_path: Path, sweep_dir: Path, log_dir: Path) -> None:
        self.grid_path = grid_path
        self.grid: Grid = load_grid(grid_path)
        self.dir = sweep_dir
        self.log_dir = log_dir
        self.pending = list(self.grid.archs)  # grid order: the grid file lists the slower arm first
        self.status: dict[str, int] = {}  # arm -> exit status of its sweep
        self._lock = threading.Lock()
        self._live: list[subprocess.Popen] = []
        self._stopped = False

    def prepare(self) -> int:
        """Plan the sweep (plan.json) and generate each cell's data once; returns the number of runs."""
        runs = plan_runs(self.grid, self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_plan(self.grid, self.dir, runs)
        from pipeline.training.run_data import prepare_run_data

        prepared: set[str] = set()
        for run in runs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConfigWarning)
                cfg = load_config(run.configs, run.overrides, check_gpu=False)
            if str(cfg.data.dir) not in prepared:
                prepare_run_data(cfg.data)
                prepared.add(str(cfg.data.dir))
        return len(runs)

    def log_path(self, arm: str) -> Path:
        return self.log_dir / f"recall-{arm}.log"

    def _take(self) -> str | None:
        with self._lock:
            return None if self._stopped or not self.pending else self.pending.pop(0)

    def work(self, on_wait: Callable[[], None] | None = None) -> None:
        """Run arms from the queue until it is empty (or `stop`); `on_wait` is called every POLL_S seconds."""
        while (arm := self._take()) is not None:
            try:
                self.status[arm] = self._run_arm(arm, on_wait)
            except OSError as err:  # could not start the subprocess: the arm failed, the demo goes on
                print(f"[demo] recall: {arm} arm could not start: {err}", file=sys.stderr, flush=True)
                self.status[arm] = 1

    def _run_arm(self, arm: str, on_wait: Callable[[], None] | None) -> int:
        argv = [sys.executable, "-m", "pipeline", "sweep", "--grid", str(self.grid_path), "--out", str(self.dir),
                "--only", f"^{re.escape(arm)}-"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        log = self.log_path(arm)
        started = time.perf_counter()
        print(f"[demo] recall: {arm} arm started, log {log}", flush=True)
        with log.open("w") as handle:
            with self._lock:
                if self._stopped:
                    return 1
                proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
                self._live.append(proc)
            try:
                while True:
                    try:
                        proc.wait(timeout=POLL_S)
                        break
                    except subprocess.TimeoutExpired:
                        if on_wait is not None:
                            on_wait()
            finally:
                with self._lock:
                    self._live.remove(proc)
        took = time.perf_counter() - started
        print(f"[demo] recall: {arm} arm finished in {took:.0f} s (exit {proc.returncode})", flush=True)
        return proc.returncode

    def stop(self) -> None:
        """Start no more arms and end the running ones (the demo was interrupted or failed)."""
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for proc in live:
            proc.terminate()
        for proc in live:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    @property
    def failed(self) -> list[str]:
        return [arm for arm in self.grid.archs if self.status.get(arm, 1) != 0]
