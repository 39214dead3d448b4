"""`pipeline status`: one table row per run (or per array task of a sweep) with its SLURM state and latest loss.

State comes from `scontrol show job -o` (accounting may be off, so no `sacct`): a job the controller no longer knows
is shown as "finished/unknown". Step and loss come from the newest `<run_dir>/csv/**/metrics.csv` that Lightning's
CSVLogger writes. Parsing `scontrol`'s `Key=Value` line is done by hand because no library reads it.

A multi-node job is RUNNING as soon as its batch script runs, even while one node never starts its task (an
unresponsive slurmd, a hung mount): srun then waits, and the other nodes wait in the rendezvous, silently. The
multi-node template has every task append "node rank pid time" to `<run_dir>/slurm/tasks.<job>.<restart>` as it
starts; a running job's nodes missing from that file are named in the state column.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.slurm.render import PLAN_DIR, TASK_FILE, parse_array_spec, read_tasks, task_run_dir
from pipeline.training.logged_metrics import latest

UNKNOWN = "finished/unknown"
_FIELD = re.compile(r"(\w[\w/:]*)=(\S*)")


@dataclass
class StatusRow:
    run: str
    jobs: str  # SLURM job id(s), newest last
    state: str
    restarts: str
    step: str
    train_loss: str
    valid_loss: str


def job_ids(run_dir: Path) -> list[str]:
    """Job ids recorded by `pipeline submit` in `<run_dir>/slurm/jobs.txt`, oldest first."""
    path = run_dir / "slurm" / "jobs.txt"
    if not path.is_file():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def query_job(job_id: str) -> list[dict[str, str]] | str:
    """`scontrol show job -o ID` as one dict per record (an array gives one per task or pending range).

    Returns a string instead when there is nothing to parse: "finished/unknown", or why SLURM could not be asked.
    """
    try:
        done = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return "unknown (no scontrol)"
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return UNKNOWN
        return f"unknown ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    return [dict(_FIELD.findall(line)) for line in done.stdout.splitlines() if line.strip()]


def describe(record: dict[str, str]) -> tuple[str, str]:
    """(state, restarts) of one scontrol record, e.g. ("PENDING (BeginTime)", "1")."""
    state = record.get("JobState", "?")
    reason = record.get("Reason", "None")
    if state == "PENDING" and reason not in ("None", "(null)"):
        state = f"PENDING ({reason})"
    return state, record.get("Restarts", "-")


def task_file(run_dir: Path, job_id: str, restart: str) -> Path:
    """Where the multi-node template's tasks record their start, for one start (restart count) of a job."""
    return run_dir / "slurm" / f"tasks.{job_id}.{restart}"


def started_nodes(path: Path) -> set[str]:
    """Nodes with a task start recorded in `path` (lines "node rank pid epoch")."""
    if not path.is_file():
        return set()
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def expand_nodes(nodelist: str) -> list[str]:
    """`n[1-2]` -> ["n1", "n2"] via `scontrol show hostnames` (SLURM's own hostlist syntax)."""
    done = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def _seconds_since(stamp: str) -> int | None:
    try:  # scontrol prints local time without a zone, e.g. 2026-12-01T12:15:48
        return max(0, int(time.time() - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timestamp()))
    except ValueError:
        return None


def missing_tasks(run_dir: Path, record: dict[str, str]) -> str | None:
    """ "n2: task not started after 35 s" for a RUNNING multi-node job with nodes that recorded no task start.

    None for other jobs, and for scripts not rendered from the current multi-node template (they record nothing).
    """
    if record.get("JobState") != "RUNNING" or int(record.get("NumNodes", "1").split("-")[0] or 1) < 2:
        return None
    script = run_dir / "slurm" / "job.sbatch"
    if not script.is_file() or "/tasks.${SLURM_JOB_ID}" not in script.read_text():
        return None
    path = task_file(run_dir, record.get("JobId", ""), record.get("Restarts", "0"))
    missing = [n for n in expand_nodes(record.get("NodeList", "")) if n not in started_nodes(path)]
    if not missing:
        return None
    since = _seconds_since(record.get("StartTime", ""))
    return f"{', '.join(missing)}: task not started" + (f" after {since} s" if since is not None else "")


def array_task_record(records: list[dict[str, str]], task: int) -> dict[str, str] | None:
    """The record covering array task `task`: its own, or the pending range ("1-2", "3,5%2") that holds it."""
    for record in records:
        spec = record.get("ArrayTaskId")
        if spec and task in parse_array_spec(spec):
            return record
    return None


def latest_metrics(run_dir: Path) -> tuple[str, str, str]:
    """(steps trained, train loss, valid loss) logged last; "-" for what is not there."""
    train, valid = latest(run_dir, "train/loss"), latest(run_dir, "valid/loss")
    steps = [entry[0] for entry in (train, valid) if entry]
    return (
        str(max(steps) + 1) if steps else "-",  # logged under step N - 1 after N steps (by_steps_trained)
        f"{train[1]:.4f}" if train else "-",
        f"{valid[1]:.4f}" if valid else "-",
    )


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _workdir(sweep_dir: Path) -> Path:
    """Where the jobs ran (`#SBATCH --chdir=` of the rendered script): task config paths are relative to it."""
    script = sweep_dir / "slurm" / "job.sbatch"
    if script.is_file():
        match = re.search(r"^#SBATCH --chdir=(.+)$", script.read_text(), re.MULTILINE)
        if match:
            return Path(match.group(1))
    return Path.cwd()


def run_row(run_dir: Path) -> StatusRow:
    ids = job_ids(run_dir)
    state, restarts = "not submitted", "-"
    if ids:
        records = query_job(ids[-1])
        state, restarts = (records, "-") if isinstance(records, str) else describe(records[0])
        if not isinstance(records, str) and (missing := missing_tasks(run_dir, records[0])):
            state = f"{state} ({missing})"
    return StatusRow(_short(run_dir), ", ".join(ids) or "-", state, restarts, *latest_metrics(run_dir))


def sweep_rows(sweep_dir: Path) -> list[StatusRow]:
    """One row per line of the sweep's task file, matched to task i of the newest array job."""
    ids = job_ids(sweep_dir)
    records = query_job(ids[-1]) if ids else "not submitted"
    workdir = _workdir(sweep_dir)
    rows = []
    for task, words in enumerate(read_tasks(sweep_dir / TASK_FILE)):
        run_dir = task_run_dir([w if "=" in w or Path(w).is_absolute() else str(workdir / w) for w in words])
        run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
        state, restarts = (records, "-") if isinstance(records, str) else ("not in array", "-")
        if not isinstance(records, str) and (record := array_task_record(records, task)) is not None:
            state, restarts = describe(record)
        job = f"{ids[-1]}_{task}" if ids else "-"
        rows.append(StatusRow(_short(run_dir), job, state, restarts, *latest_metrics(run_dir)))
    return rows


def plan_rows(sweep_dir: Path) -> list[StatusRow]:
    """The sweep's plan job (`pipeline sweep --slurm`), if it has one; unless it is pending, running or completed,
    its state names its log (a failed plan job cancels the array: the log says why)."""
    plan = sweep_dir / PLAN_DIR
    ids = job_ids(plan)
    if not ids:
        return []
    row = run_row(plan)
    row.run = f"{row.run} (plan job)"
    if not row.state.startswith(("PENDING", "RUNNING", "COMPLETED")):
        row.state = f"{row.state} (log {_short(plan / 'slurm' / f'{ids[-1]}.out')})"
    return [row]


def status_rows(paths: list[Path]) -> list[StatusRow]:
    rows: list[StatusRow] = []
    for path in paths:
        is_sweep = (path / TASK_FILE).is_file()
        rows.extend([*plan_rows(path), *sweep_rows(path)] if is_sweep else [run_row(path)])
    return rows


def default_paths(root: Path) -> list[Path]:
    """Every directory under `root` that `pipeline submit` has written a jobs.txt into."""
    return sorted(p.parent.parent for p in root.glob("**/slurm/jobs.txt")) if root.is_dir() else []


def print_status(rows: list[StatusRow]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pipeline runs")
    headers = ("run", "SLURM job", "state", "restarts", "step", "train loss", "valid loss")
    for header in headers:
        numeric = header in ("restarts", "step") or "loss" in header
        # Only the path may wrap: a state or job id split over lines is hard to read at a glance.
        table.add_column(
            header, justify="right" if numeric else "left", no_wrap=header != "run", overflow="fold"
        )
    for row in rows:
        table.add_row(row.run, row.jobs, row.state, row.restarts, row.step, row.train_loss, row.valid_loss)
    console = Console()
    if not console.is_terminal:  # piped into a file or a test: rich's 80 columns would crush the run paths
        console = Console(width=200)
    console.print(table)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="RUN_DIR|SWEEP_DIR",
                        help="runs or sweeps to show; default: every directory under runs/ with a slurm/jobs.txt")  # fmt: skip


def run_status(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or default_paths(Path("runs"))
    missing = [p for p in paths if not p.is_dir()]
    if missing:
        print(f"pipeline status: error: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if not paths:
        print("pipeline status: no runs with a slurm/jobs.txt under runs/", file=sys.stderr)
        return 0
    print_status(status_rows(paths))
    return 0
