"""`pipeline submit`: render an sbatch script into the run directory and hand it to `sbatch` (what the cluster does
with it: `pipeline status`, pipeline/slurm/status.py).

The script lands in `<run_dir>/slurm/job.sbatch` (arrays: in the sweep directory, next to `array_configs.txt`), the
job id in `<run_dir>/slurm/jobs.txt`. The job runs `srun <python> -m pipeline train --config ... --resume auto
train.num_nodes=N train.devices=G ...`; on USR1 the trainer checkpoints at a step boundary and exits with 75, the
sbatch template answers with `scontrol requeue` (Lightning's own requeue is off: `SLURMEnvironment(auto_requeue=
False)`, see pipeline/training/preemption.py), and the next start resumes. Rendering: `pipeline.slurm.render`.
Only `check_run_config` imports torch (the model registry checks the model keys).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.slurm.render import (
    JobSpec,
    LaunchError,
    build_job,
    check_array,
    cluster_config_path,
    load_cluster_defaults,
    read_tasks,
    render,
    trainer_overrides,
    write_tasks,
)

JOBS_FILE = "jobs.txt"  # one line per submission: job id, time, script


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True, metavar="YAML",
                        help="run config(s), merged left to right; for an array, the sweep's config (its run_dir "
                        "is the sweep directory)")  # fmt: skip
    parser.add_argument("--nodes", type=int, help="nodes (more than 1 uses slurm/multi_node.sbatch)")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node; one task per GPU")
    parser.add_argument("--ntasks-per-node", type=int, dest="tasks_per_node", metavar="N",
                        help="tasks per node when there are no GPUs (CPU/gloo runs); default: gpus-per-node or 1")  # fmt: skip
    parser.add_argument(
        "--cpus-per-task", type=int, help="CPU cores per task (default: cluster file, else SLURM's)"
    )
    parser.add_argument("--mem", help="memory per node, e.g. 64G")
    parser.add_argument("--time", help="time limit, e.g. 24:00:00")
    parser.add_argument(
        "--partition", help="SLURM partition (default: cluster file, else the cluster's default)"
    )
    parser.add_argument("--account", help="SLURM account to charge (default: cluster file, if any)")
    parser.add_argument("--array", metavar="SPEC",
                        help="submit a job array over the lines of <sweep_dir>/array_configs.txt, e.g. 0-9%%4")  # fmt: skip
    parser.add_argument("--task", action="append", metavar="'CFG.yaml [k=v ...]'",
                        help="one array task (repeatable): writes array_configs.txt; implies --array 0-(n-1)")  # fmt: skip
    parser.add_argument("--job-name", help="SLURM job name (default: the run directory's name)")
    parser.add_argument(
        "--signal-seconds", type=int, help="send USR1 this long before the time limit (default 90)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the rendered script; submit nothing")
    # The command srun runs instead of `<python> -m pipeline train` (integration tests use a stand-in payload).
    parser.add_argument("--command", help=argparse.SUPPRESS)
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=10"
    )


def submit_script(script: Path, *sbatch_args: str) -> str:
    """`sbatch --parsable [SBATCH_ARGS] SCRIPT` -> job id (the part before any ';cluster')."""
    try:
        done = subprocess.run(
            ["sbatch", "--parsable", *sbatch_args, str(script)], capture_output=True, text=True, check=False
        )
    except FileNotFoundError as err:
        raise LaunchError(
            "sbatch not found: is this a SLURM login node? (--dry-run renders without it)"
        ) from err
    if done.returncode != 0:
        raise LaunchError(f"sbatch {script} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]


def record_job(slurm_dir: Path, job_id: str, script: Path) -> None:
    with open(slurm_dir / JOBS_FILE, "a") as f:
        f.write(f"{job_id}\t{datetime.now().isoformat(timespec='seconds')}\t{script}\n")


def check_run_config(job: JobSpec) -> None:
    """Load the job's run config as `pipeline train` will on the node (its files, the job's and the user's
    overrides), minus the GPU check: a typo or an out-of-range value is a LaunchError now, before any script.

    Imports torch (the model registry checks the model keys): a second or two, once per submission.
    """
    _check_config(job.configs, [*trainer_overrides(job), *job.overrides], "run config")


def check_task_configs(job: JobSpec, tasks: list[list[str]]) -> None:
    """Every array task's config (its line's files and `key=value` overrides, as the array template splits them),
    loaded like `check_run_config`: a bad line is named with its task index and file before anything is rendered."""
    for index, words in enumerate(tasks):
        configs = [w for w in words if "=" not in w]
        overrides = [w for w in words if "=" in w]
        _check_config(configs, [*trainer_overrides(job), *overrides], f"{job.task_file} task {index}")


def _check_config(configs: list[str], overrides: list[str], what: str) -> None:
    from pipeline.config import load_config

    try:
        load_config(configs, overrides, check_gpu=False)
    except LaunchError:
        raise
    except ConfigError as err:
        raise LaunchError(f"{what}: {err}") from err


def prepare(args: argparse.Namespace) -> tuple[Path, str, str]:
    """Build the job from flags + cluster file, write the script (and task file); return (path, text, job kind)."""
    flags = {
        key: getattr(args, key, None)
        for key in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem", "time", "partition",
                    "account", "array", "job_name", "signal_seconds")
    }  # fmt: skip
    if args.command:
        flags["command"] = shlex.split(args.command)
    if args.task and not flags["array"]:
        flags["array"] = f"0-{len(args.task) - 1}"
    cluster = load_cluster_defaults(cluster_config_path())
    job = build_job(cluster, args.config, args.overrides, **flags)
    if job.array is not None:
        if args.task:
            write_tasks(job.task_file, [shlex.split(line) for line in args.task])
        tasks = read_tasks(job.task_file)
        check_array(job, len(tasks))
        if job.command is None:  # the real trainer runs each line: a bad one must fail now, not on the node
            check_task_configs(job, tasks)
    elif job.command is None:  # the real trainer: its config must load here, not fail when the job starts
        check_run_config(job)
    text = render(job)
    job.slurm_dir.mkdir(parents=True, exist_ok=True)
    script = job.slurm_dir / "job.sbatch"
    script.write_text(text)
    return script, text, job.template


def run_submit(args: argparse.Namespace) -> int:
    try:
        script, text, _ = prepare(args)
        if args.dry_run:
            print(text, end="")
            print(f"# written to {script}; not submitted (--dry-run)", file=sys.stderr)
            return 0
        job_id = submit_script(script)
    except LaunchError as err:
        print(f"pipeline submit: error: {err}", file=sys.stderr)
        return 2
    record_job(script.parent, job_id, script)
    print(job_id)
    return 0
