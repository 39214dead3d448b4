"""`pipeline sweep --slurm`: a small plan job, then the job array that waits for it, so that the submitting (login)
node does no data work.

Why a plan job: a token budget becomes `max_steps` only once the data is prepared and one training epoch has been
read to count the tokens per batch (`pipeline.sweep.grid.mean_tokens_per_batch`): minutes to hours on a real corpus,
which belongs on a compute node, not a login node. The submit itself only reads the grid and the configs.

How the array gets its steps (the simplest robust way with the existing array template, which reads its line of
`array_configs.txt` when a task starts):
- The number of runs is known without measuring (`plan_runs(..., measure=False)`), so the array size is fixed at
  submit time, and `array_configs.txt` is written then with everything but the measured length.
- The plan job (`pipeline sweep --plan-array`: one node, one task, no GPU; `--plan-time`/`--plan-cpus`, else the
  sweep's own time and CPUs) prepares each data stream, fills the token cache, writes `plan.json`, and rewrites
  every line with its `train.max_steps`, `train.val_every` and `optim.warmup_steps` (a temp file, then
  `os.replace`, so a reader sees the old file or the new one, never half of it).
- The array is submitted with `--dependency=afterok:<plan job>`: no task starts before its line is final, and a
  requeued task reads the same final line. `--kill-on-invalid-dep=yes`: if the plan job fails, the array is
  cancelled instead of pending forever.
Rewriting the lines (rather than each task computing its own steps from the grid and the cache) keeps the task file
the one record of what each task runs, which `pipeline status`, requeues and a resubmit already read.

The plan job is a run directory of its own, `SWEEP_DIR/slurm/plan` (script, jobs.txt and log under its `slurm/`,
as `pipeline submit` lays out a run), so `pipeline status SWEEP_DIR` shows it as its first row. It runs the
single-node template, which appends `--resume auto` and the trainer's node/device overrides to its command line;
`--plan-array` ignores them.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.slurm import render as sr
from pipeline.slurm.submit import record_job, submit_script
from pipeline.sweep.grid import Grid, PlannedRun, SweepError, plan_runs, write_plan

DRY_RUN_PLAN_ID = "PLAN_JOB_ID"  # stands in for the plan job's id in a --dry-run's array script


def add_plan_arguments(slurm: argparse._ArgumentGroup, parser: argparse.ArgumentParser) -> None:
    """`--plan-time`/`--plan-cpus` (public, SLURM group) and the hidden `--plan-array`/`--world` (the plan job)."""
    slurm.add_argument("--plan-time", metavar="TIME",
                       help="time limit of the plan job that prepares the data and sets each run's steps "
                       "(default: --time / cluster file)")  # fmt: skip
    slurm.add_argument("--plan-cpus", type=int, metavar="N",
                       help="CPU cores of the plan job (default: --cpus-per-task / cluster file)")  # fmt: skip
    parser.add_argument("--plan-array", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "tasks_per_node": args.ntasks_per_node,
            "cpus_per_task": args.cpus_per_task, "mem": args.mem, "time": args.time, "partition": args.partition,
            "account": args.account, "signal_seconds": args.signal_seconds}  # fmt: skip


def _job(cluster: sr.ClusterDefaults, run_dir: Path, **flags: object) -> sr.JobSpec:
    # `run_dir=` only names where the job's files go; the command line carries everything else
    return dataclasses.replace(sr.build_job(cluster, [], [f"run_dir={run_dir}"], **flags), overrides=[])


def array_job(cluster: sr.ClusterDefaults, grid: Grid, sweep_dir: Path, n_runs: int,
              args: argparse.Namespace) -> sr.JobSpec:  # fmt: skip
    """The array: task i runs line i of `array_configs.txt` through `pipeline sweep --run-one`."""
    array = f"0-{n_runs - 1}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    job = _job(cluster, sweep_dir, **_flags(args), array=array, job_name=f"sweep-{grid.name}")
    command = [job.python, "-m", "pipeline", "sweep", "--run-one"]
    command += ["--delete-checkpoints"] if grid.delete_checkpoints else []
    return dataclasses.replace(job, command=command)


def plan_job(cluster: sr.ClusterDefaults, grid: Grid, sweep_dir: Path, array: sr.JobSpec,
             args: argparse.Namespace) -> sr.JobSpec:  # fmt: skip
    """One task on one node without GPUs; its `--world` is the array's ranks per run (the steps depend on it)."""
    for name, flag, value in (
        ("cpus_per_task", "--plan-cpus", args.plan_cpus),
        ("time", "--plan-time", args.plan_time),
    ):
        if value is not None:
            sr.check_slurm_value(name, value, flag)
    flags = {**_flags(args), "nodes": 1, "gpus_per_node": 0, "tasks_per_node": 1,
             "cpus_per_task": args.plan_cpus or args.cpus_per_task, "time": args.plan_time or args.time}  # fmt: skip
    job = _job(cluster, sweep_dir / sr.PLAN_DIR, **flags, job_name=f"plan-{grid.name}")
    command = [job.python, "-m", "pipeline", "sweep", "--plan-array", "--grid", str(grid.path.resolve()),
               "--out", str(sweep_dir), "--world", str(array.nodes * array.tasks_per_node)]  # fmt: skip
    return dataclasses.replace(job, command=command)


def _write_script(job: sr.JobSpec, name: str = "job.sbatch") -> tuple[Path, str]:
    text = sr.render(job)
    job.slurm_dir.mkdir(parents=True, exist_ok=True)
    script = job.slurm_dir / name
    script.write_text(text)
    return script, text


def _after(job: sr.JobSpec, plan_id: str) -> sr.JobSpec:
    extra = [f"--dependency=afterok:{plan_id}", "--kill-on-invalid-dep=yes"]
    return dataclasses.replace(job, sbatch_extra=[*job.sbatch_extra, *extra])


def submit_array(grid: Grid, sweep_dir: Path, todo: list[PlannedRun], args: argparse.Namespace) -> int:
    """Write `array_configs.txt` (one unfinished run per line, steps not yet known), submit the plan job, then
    the array that waits for it. `--dry-run` writes and prints both scripts and submits nothing."""
    from pipeline.slurm.render import LaunchError

    if not todo:
        print(f"sweep {sweep_dir}: every run has a result.json; nothing to submit")
        return 0
    sweep_dir = sweep_dir.resolve()
    try:
        cluster = sr.load_cluster_defaults(sr.cluster_config_path())
        array = array_job(cluster, grid, sweep_dir, len(todo), args)
        plan = plan_job(cluster, grid, sweep_dir, array, args)
        sr.write_tasks(array.task_file, [[*r.configs, *r.overrides] for r in todo])
        sr.check_array(array, len(todo))
        plan_script, plan_text = _write_script(plan)
        if args.dry_run:
            array_script, array_text = _write_script(_after(array, DRY_RUN_PLAN_ID))
            print(plan_text, end="")
            print(array_text, end="")
            print(f"# plan job {plan_script}, then {len(todo)} array tasks ({array.task_file}) {array_script}; "
                  f"not submitted (--dry-run; {DRY_RUN_PLAN_ID} stands for the plan job's id)", file=sys.stderr)  # fmt: skip
            return 0
        plan_id = submit_script(plan_script)
        record_job(plan.slurm_dir, plan_id, plan_script)
        array_script, _ = _write_script(_after(array, plan_id))
        try:
            job_id = submit_script(array_script)
        except LaunchError:
            subprocess.run(["scancel", plan_id], capture_output=True, check=False)  # no array: no plan needed
            raise
    except LaunchError as err:
        raise SweepError(str(err)) from err
    record_job(array.slurm_dir, job_id, array_script)
    log = plan.slurm_dir / f"{plan_id}.out"
    print(f"plan job {plan_id}: prepares the data and sets each run's steps (log {log})")
    print(f"{job_id}: {len(todo)} runs ({array.task_file}), after plan job {plan_id} succeeds; "
          f"watch with `pipeline status {sweep_dir}`")  # fmt: skip
    return 0


def finish_plan(grid: Grid, sweep_dir: Path, world: int) -> int:
    """The plan job: prepare each data stream, measure the token cache, write `plan.json` and rewrite every line of
    `array_configs.txt` with its steps. A line whose run the grid no longer has is an error (the array never runs)."""
    runs = plan_runs(grid, sweep_dir, world, measure=False)
    streams = {}
    # prepared here, once, even where the cache knows the steps: the array's tasks must not race to prepare it
    for run in runs:
        data = load_config(run.configs, run.overrides, check_gpu=False).data
        streams.setdefault(str(data.dir), data)
    from pipeline.training.run_data import prepare_run_data

    for data in streams.values():
        print(f"plan: preparing {data.dir}", flush=True)
        prepare_run_data(data)
    runs = plan_runs(grid, sweep_dir, world, measure=True)
    by_name = {r.name: r for r in runs}
    path = sweep_dir / sr.TASK_FILE
    lines = []
    for number, words in enumerate(sr.read_tasks(path), start=1):
        name = sr.task_run_dir(words).name
        if name not in by_name:
            why = f"run {name!r} is not in {grid.path} (was the grid changed after the submit?)"
            raise SweepError(f"{path}:{number}: {why}")
        lines.append([*by_name[name].configs, *by_name[name].overrides])
    sr.write_tasks(path, lines)
    write_plan(grid, sweep_dir, runs)
    steps = ", ".join(f"{by_name[sr.task_run_dir(w).name].max_steps}" for w in lines)
    print(f"plan: {len(lines)} task lines in {path} with their steps ({steps}); world {world}")
    return 0
