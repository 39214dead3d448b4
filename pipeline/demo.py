"""`pipeline demo` (`make demo`): the whole loop in miniature on the embedded corpus, on CPU, in under ten minutes.

tokenize -> shards -> a small scaling sweep of the three architectures (3 sizes, one token budget, one record per
run) -> scaling-law fits with bootstrap CIs -> plots -> one `summary.md`. On the second core, at the same time, a
"showcase" Transformer trains long enough that its sample translations are French words in a plausible order.
Then the recall panel (`pipeline.demo_recall`): a small LSTM and a small Transformer on MQAR at a few N, one
architecture per core as the cores free up, reported by the capacity-law report; the summary opens with where each
one's recall fell below the threshold. Every model is its own offline W&B run. What the miniature can and cannot
show is said in the summary: it is a demonstration of the pipeline, not a result.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SHOWCASE = ["configs/demo/base.yaml", "configs/demo/showcase.yaml"]
RECALL_GRID = "configs/sweeps/demo-recall.yaml"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument(
        "--out", default="runs/demo", help="where the sweep, the showcase run and summary.md go"
    )
    parser.add_argument("--grid", default="configs/sweeps/demo.yaml", help="the miniature sweep's grid file")
    parser.add_argument("--recall-grid", default=RECALL_GRID, metavar="YAML",
                        help="the recall panel's grid file (MQAR cells, one arm per architecture)")  # fmt: skip
    parser.add_argument(
        "--showcase", action="append", metavar="YAML",
        help="a config file of the showcase run (trained beside the sweep, on the other core); repeat to merge "
        "several (default: configs/demo/base.yaml and configs/demo/showcase.yaml)",
    )  # fmt: skip
    parser.add_argument("--n-boot", type=int, default=100,
                        help="bootstrap resamples per fit in the reports (default 100: the miniature's intervals "
                             "are indicative; its fits are on the 10-minute budget's critical path)")  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="applied to the showcase run, e.g. train.max_steps=300 (the sweep takes its grid's settings)",
    )  # fmt: skip


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError
    from pipeline.scaling.cli import MIN_BOOT

    if args.n_boot != 0 and args.n_boot < MIN_BOOT:  # before ten minutes of training, not after
        print(f"pipeline demo: error: --n-boot must be 0 (point estimates only) or >= {MIN_BOOT} resamples per "
              f"fit, got {args.n_boot}", file=sys.stderr)  # fmt: skip
        return 2
    try:
        return _demo(args)
    except ConfigError as err:
        print(f"pipeline demo: error: {err}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from pipeline.config import load_config, shipped_path
    from pipeline.demo_recall import RecallPanel
    from pipeline.sweep.grid import load_grid
    from pipeline.training.run_data import prepare_run_data

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    showcase_cfgs = [shipped_path(p) for p in args.showcase or SHOWCASE]
    showcase_dir = out / "showcase"
    showcase = load_config(showcase_cfgs, [*args.overrides, f"run_dir={showcase_dir}"])
    grid = load_grid(shipped_path(args.grid))
    d = showcase.data
    print(f"[demo] data: {d.corpus} -> {d.dir} (prepared once, reused)", flush=True)
    prepare_run_data(d)
    recall = RecallPanel(shipped_path(args.recall_grid), out / "recall", out)
    n_recall = recall.prepare()  # every arm's data, generated here before any arm starts
    print(f"[demo] recall panel: {recall.grid_path} -> {recall.dir} ({n_recall} runs, arms "
          f"{', '.join(recall.pending)}; each starts when a core frees up)", flush=True)  # fmt: skip

    log = out / "showcase.log"
    print(f"[demo] showcase: {showcase.model['arch']} {showcase.train.max_steps} steps in the background, "
          f"log {log}", flush=True)  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "pipeline", "train", *[a for c in showcase_cfgs for a in ("--config", str(c))],
            *args.overrides, f"run_dir={showcase_dir}"]  # fmt: skip
    with log.open("w") as handle:
        child = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
        # the showcase's core takes recall arms once the showcase ends; this one once the sweep's report is written
        second = threading.Thread(target=lambda: (child.wait(), recall.work()), daemon=True)
        second.start()
        try:
            sweep_dir = out / "sweep"
            print(f"[demo] sweep: {grid.path} -> {sweep_dir}", flush=True)
            sweep_status = _sweep(grid, sweep_dir)
            report, no_fit = _report(sweep_dir, out / "report", args.n_boot)  # while the showcase trains
            recall.work(on_wait=functools.partial(_progress, child, showcase_dir, showcase.train.max_steps))
            _wait_for(child, showcase_dir, showcase.train.max_steps)
            second.join()
        except BaseException:
            recall.stop()
            child.terminate()
            child.wait(timeout=60)
            raise
    if child.returncode != 0:
        print(f"[demo] the showcase run failed (exit {child.returncode}); see {log}", file=sys.stderr)
        return 1
    shown = json.loads((showcase_dir / "summary.json").read_text())
    recall_report, no_recall = _report(
        recall.dir, out / "recall-report", args.n_boot, "recall (capacity law)"
    )
    total = time.perf_counter() - started
    from pipeline.demo_summary import recall_lines, write_summary

    recall_top = recall_lines(out, recall.dir, recall_report, no_recall)
    path = write_summary(out, sweep_dir, report, shown, total, no_fit, recall_top)
    print(path.read_text())
    print(f"[demo] {total:.0f} s in all; wrote {path}")
    if recall.failed:
        print(f"[demo] recall arm(s) with failed runs: {', '.join(recall.failed)}; see "
              f"{', '.join(str(recall.log_path(a)) for a in recall.failed)}", file=sys.stderr)  # fmt: skip
    return 0 if sweep_status == 0 and not recall.failed else 1


def _report(
    sweep_dir: Path, out: Path, n_boot: int, what: str = "scaling laws"
) -> tuple[Path | None, str | None]:
    """Fits and figures of the sweep -> (report path, None), or (None, why) when nothing could be fitted."""
    print(f"[demo] fitting {what} (bootstrap CIs) and drawing the report", flush=True)
    from pipeline.scaling.report.write import write_report

    try:
        return write_report(sweep_dir, out, n_boot=n_boot), None
    except ValueError as err:  # e.g. every run learned nothing: the summary still shows the runs and says why
        print(f"[demo] no scaling fit: {err}", file=sys.stderr)
        return None, str(err)


def _sweep(grid: Any, sweep_dir: Path) -> int:
    """The grid's runs, one after another in this process on one thread (the showcase has the other core)."""
    import torch

    from pipeline.sweep.grid import plan_runs
    from pipeline.sweep.runner import run_local

    torch.set_num_threads(1)
    return run_local(grid, sweep_dir, plan_runs(grid, sweep_dir))


def _progress(child: subprocess.Popen, run_dir: Path, max_steps: int) -> None:
    """One line of the showcase's progress (steps from its CSV log), while it trains."""
    from pipeline.training.logged_metrics import by_steps_trained, read_metric

    if child.poll() is not None:
        return
    steps = by_steps_trained(read_metric(run_dir, "train/loss"))
    if steps:
        step, loss = max(steps.items())
        print(f"[demo] showcase: step {step}/{max_steps}, train loss {loss:.3f}", flush=True)


def _wait_for(child: subprocess.Popen, run_dir: Path, max_steps: int) -> None:
    """Wait for the showcase, printing its progress every 10 s."""
    while child.poll() is None:
        _progress(child, run_dir, max_steps)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
