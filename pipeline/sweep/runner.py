"""`pipeline sweep --grid GRID.yaml`: train every (architecture, size, token budget) of a scaling grid and write one
result record per run, locally one after another or as a SLURM job array.

The grid file and how a token budget becomes a run length: `pipeline.sweep.grid`. The record keeps the tokens
actually trained on, FLOPs per token from the model's own estimate at the corpus' mean lengths, and epochs.

Resumable: a run with `result.json` is skipped; an unfinished one resumes from its newest checkpoint
(`--resume auto`); a failed one leaves `error.txt` and the sweep goes on. On SLURM each array task runs
`pipeline sweep --run-one --config ... key=value ...`, the same code path as one local run, after a plan job has
prepared the data and set each run's steps (`pipeline.sweep.slurm_plan`): the submitting node does no data work.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pipeline.config import ConfigError, load_config
from pipeline.scaling.records.run_dir import ERROR_FILE, RESULT_FILE, write_error
from pipeline.sweep.grid import Grid, PlannedRun, SweepError, load_grid, plan_runs, write_plan
from pipeline.training.process_exit import TrainProcess, exit_process

if TYPE_CHECKING:  # run_one imports Lightning: only when a run trains
    from pipeline.sweep.run_one import RunInterrupted


# ------------------------------------------------------------------------------------------------- the sweep
def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    # --grid is required, but not by argparse: the hidden --run-one mode (what array tasks run) has no grid
    parser.usage = "pipeline sweep --grid YAML [--out SWEEP_DIR] [--dry-run] [--only PATTERN] [--slurm ...]"
    parser.add_argument("--grid", metavar="YAML", help="grid file (required), e.g. configs/sweeps/tiny.yaml")
    parser.add_argument("--out", metavar="SWEEP_DIR",
                        help="sweep directory (default: the grid's `out`, else runs/sweeps/<grid name>)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (with --slurm: the plan job's and the array's scripts); train "
                        "nothing, measure nothing")  # fmt: skip
    parser.add_argument("--only", metavar="PATTERN", action="append", type=_run_pattern,
                        help="run only runs whose name matches this regular expression anywhere (a plain "
                        "substring works; anchor with ^: '^lstm-' is not residual_lstm-...; one that starts with '-' "
                        "goes after '=': --only=-N4-); repeatable, a run matching any is kept")  # fmt: skip
    slurm = parser.add_argument_group(
        "SLURM (with --slurm: a plan job prepares the data and sets the steps, then one array task per unfinished run)"
    )
    slurm.add_argument(
        "--slurm", action="store_true", help="submit a plan job and a job array instead of running locally"
    )
    for flag, kind in (("--nodes", int), ("--gpus-per-node", int), ("--ntasks-per-node", int),
                       ("--cpus-per-task", int), ("--mem", str), ("--time", str), ("--partition", str),
                       ("--account", str), ("--signal-seconds", int)):  # fmt: skip
        slurm.add_argument(flag, type=kind, help="per run, as for `pipeline submit` (default: cluster file)")
    slurm.add_argument(
        "--max-parallel", type=int, metavar="K", help="at most K runs at a time (--array=...%%K)"
    )
    from pipeline.sweep.slurm_plan import add_plan_arguments

    add_plan_arguments(slurm, parser)
    # What each array task runs: one run given by its config files and overrides (same code as a local run).
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--resume", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--delete-checkpoints", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)


def _run_pattern(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({err})") from err


def sweep_dir_of(grid: Grid, out: str | None) -> Path:
    return Path(out or grid.out or f"runs/sweeps/{grid.name}")


def main_sweep(args: argparse.Namespace) -> NoReturn:
    """`pipeline sweep` as the console script runs it: its runs train in this process, so it ends the way a
    training process must (`exit_process`)."""
    process = TrainProcess()
    process.status = run_sweep(args, process)
    exit_process(process)


def run_sweep(args: argparse.Namespace, process: TrainProcess | None = None) -> int:
    """The sweep's exit status; `process` (if given) learns whether a run took part in a process group."""
    try:
        if args.run_one:
            return _run_one(args, process)
        if not args.grid:
            raise SweepError("--grid is required (a grid file, e.g. configs/sweeps/tiny.yaml)")
        grid = load_grid(args.grid)
        sweep_dir = sweep_dir_of(grid, args.out)
        if args.plan_array:  # the SLURM plan job
            from pipeline.sweep.slurm_plan import finish_plan

            return finish_plan(grid, sweep_dir.resolve(), args.world)
        if not (args.dry_run or args.slurm):
            return _run_local_until_planned(grid, sweep_dir, args.only, process)
        world = (args.nodes or 1) * (args.gpus_per_node or args.ntasks_per_node or 1) if args.slurm else 1
        # --slurm measures in its plan job, on a compute node
        runs = _selected(plan_runs(grid, sweep_dir.resolve() if args.slurm else sweep_dir, world, measure=False),
                         args.only)  # fmt: skip
        if args.dry_run and not args.slurm:
            print_plan(runs, sweep_dir, "step budget" if grid.steps_budget else "tokens")
            return 0
        from pipeline.sweep.slurm_plan import submit_array

        todo = [r for r in runs if not r.waiting and not (sweep_dir / r.name / RESULT_FILE).is_file()]
        status = submit_array(grid, sweep_dir, todo, args)
        _say_waiting([r for r in runs if r.waiting], "submit the sweep again")
        return status
    except (SweepError, ConfigError, FileNotFoundError) as err:
        print(f"pipeline sweep: error: {err}", file=sys.stderr)
        return 2


def _selected(runs: list[PlannedRun], only: list[re.Pattern[str]] | None) -> list[PlannedRun]:
    return [r for r in runs if any(p.search(r.name) for p in only)] if only else runs


def _say_waiting(waiting: list[PlannedRun], then: str) -> None:
    if waiting:
        print(f"{len(waiting)} runs wait for their learning rate ({waiting[0].name}: {waiting[0].waiting}); "
              f"{then} once those runs have finished")  # fmt: skip


def _run_local_until_planned(
    grid: Grid, sweep_dir: Path, only: list[re.Pattern[str]] | None, process: TrainProcess | None = None
) -> int:
    """Train every ready run; then, while that made waiting runs ready (`replicate_best_lr`: the first seed chose
    their rate), plan again and train those. Stops on an interrupt, and when a pass readies nothing new."""
    status, waiting_before = 0, None
    while True:
        runs = plan_runs(grid, sweep_dir)
        write_plan(grid, sweep_dir, runs)  # the report's "of N"
        runs = _selected(runs, only)
        waiting = [r for r in runs if r.waiting]
        if waiting_before is not None and len(waiting) >= waiting_before:
            _say_waiting(waiting, "run the sweep again")  # e.g. a choosing run failed, or --only left it out
            return status
        status = run_local(grid, sweep_dir, [r for r in runs if not r.waiting], process)
        if not waiting or status not in (0, 1):  # done, or interrupted (75/143): stop
            return status
        waiting_before = len(waiting)


def _run_one(args: argparse.Namespace, process: TrainProcess | None = None) -> int:
    cfg = load_config(args.config, args.overrides)  # loaded once: train_run uses it as is
    if (cfg.resolved_run_dir / RESULT_FILE).is_file():
        print(f"{cfg.resolved_run_dir}: finished already ({RESULT_FILE} exists)")
        return 0
    from pipeline.sweep.run_one import RunInterrupted, train_run

    try:
        train_run(args.config, args.overrides, args.delete_checkpoints, cfg=cfg, process=process)
    except RunInterrupted as err:  # checkpointed on a signal: the status the array script requeues on
        print(f"pipeline sweep: {err}", file=sys.stderr)
        return _signal_status(err)
    except Exception:
        _write_error(cfg.resolved_run_dir, traceback.format_exc())
        raise
    return 0


def _signal_status(err: RunInterrupted) -> int:
    """75 after SIGUSR1 (requeue me), 143 after SIGTERM, as `pipeline train` exits (training/preemption.py)."""
    from pipeline.training.preemption import exit_code

    return exit_code(err.signal_name)


def _write_error(run_dir: Path, text: str) -> None:
    write_error(run_dir, text)


def print_plan(runs: list[PlannedRun], sweep_dir: Path, unit: str = "tokens") -> None:
    print(f"sweep {sweep_dir}: {len(runs)} runs")
    for r in runs:
        d = sweep_dir / r.name
        state = "done" if (d / RESULT_FILE).is_file() else "failed" if (d / ERROR_FILE).is_file() else "todo"
        state = f"waiting: {r.waiting}" if r.waiting else state
        steps = f"{r.max_steps:>7}" if r.max_steps else "      -" if r.waiting else "      ?"
        print(f"  {r.name:40} {r.budget:>12,} {unit} {steps} steps  {state}")
    if any(not r.max_steps and not r.waiting for r in runs):
        print("  (? = steps are measured from the prepared data when the sweep first runs)")


def run_local(
    grid: Grid, sweep_dir: Path, runs: list[PlannedRun], process: TrainProcess | None = None
) -> int:
    """Every run, one after another in this process; finished runs are skipped, failures recorded and listed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.sweep.run_one import RunInterrupted, train_run

    logging.getLogger("lightning.pytorch").setLevel(
        logging.WARNING
    )  # per-run banners would bury the progress
    console = Console(soft_wrap=True)  # whole lines in logs and captured output
    failed: list[tuple[str, str]] = []
    done = skipped = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[note]}"))  # fmt: skip
    with Progress(*columns, console=console) as bar:
        overall = bar.add_task(f"sweep {grid.name}", total=len(runs), note="")
        for run in runs:
            run_dir = sweep_dir / run.name
            if (run_dir / RESULT_FILE).is_file():
                skipped += 1
                bar.advance(overall)
                continue
            task = bar.add_task(f"  {run.name}", total=run.max_steps, note="")
            start = time.perf_counter()
            try:
                record = train_run(run.configs, run.overrides, grid.delete_checkpoints, (bar, task),
                                   process=process)  # fmt: skip
                done += 1
                if record is not None:  # None on the other ranks of a multi-device run
                    console.log(f"{run.name}: valid loss {record.final_valid_loss:.4f}, {record.tokens:,} tokens, "
                                f"{record.compute:.3g} FLOPs, {time.perf_counter() - start:.0f} s")  # fmt: skip
            except RunInterrupted as err:  # SIGTERM/SIGUSR1 (scancel, kill, preemption): stop the whole sweep
                console.print(f"sweep {sweep_dir} stopped: {err}; rerun the same command to resume")
                return _signal_status(err)
            except Exception as err:  # a failed run is recorded and the sweep goes on; Ctrl-C still stops it
                _write_error(run_dir, traceback.format_exc())
                failed.append((run.name, f"{type(err).__name__}: {err}".splitlines()[0]))
                console.log(f"[red]{run.name} failed[/red]: {failed[-1][1]} (see {run_dir / ERROR_FILE})")
            bar.remove_task(task)
            bar.advance(overall)
    console.print(f"sweep {sweep_dir}: {done} trained, {skipped} already finished, {len(failed)} failed")
    for name, why in failed:
        console.print(f"  [red]failed[/red] {name}: {why}")
    return 1 if failed else 0
