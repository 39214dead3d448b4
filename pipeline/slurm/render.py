"""Turn a run's configs plus the user's cluster defaults into an sbatch script, from the templates in `slurm/`.

Imports only the standard library and yaml (no torch), so `pipeline submit` starts instantly on a login node.
Templates use `{{name}}` placeholders rather than `string.Template`'s `$name`: the scripts are bash, full of `$VAR`
that would otherwise all need doubling. Placeholder substitution is the one thing written by hand here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError, load_mapping, reject_unknown

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "slurm"  # the repo's slurm/ templates
TASK_FILE = "array_configs.txt"  # one run per line: config paths and key=value overrides, shell-quoted
PLAN_DIR = "slurm/plan"  # in a sweep directory: its plan job's run directory (pipeline.sweep.slurm_plan)
SLURM_MAX_COUNT = 2**31 - 1  # nodes, tasks, CPUs, GPUs: sbatch reads them as 32-bit numbers
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
# days-hours:minutes:seconds, or unlimited (sbatch(1), "-t, --time")
_SLURM_TIME = re.compile(
    r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})"
)
_SLURM_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)  # sbatch --mem: a size, default unit megabytes


def check_slurm_value(name: str, value: Any, where: str) -> None:
    """Raise LaunchError naming `where` (a flag or a cluster-file key) when sbatch would reject `value`."""
    text = str(value).strip()
    if name == "time" and not (text.lower() in ("unlimited", "infinite") or _SLURM_TIME.fullmatch(text)):
        raise LaunchError(
            f"{where} {value!r} is not a SLURM time: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS "
            "(e.g. 24:00:00 or 2-00:00:00)"
        )
    if name == "mem" and not _SLURM_MEM.fullmatch(text):
        raise LaunchError(
            f"{where} {value!r} is not a SLURM memory size: e.g. 64G, 512M or 16000 (megabytes)"
        )
    minimum = {"gpus_per_node": 0, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 1, "signal_seconds": 1}
    if name in minimum and (isinstance(value, bool) or not isinstance(value, int) or value < minimum[name]):
        raise LaunchError(f"{where} must be an integer >= {minimum[name]}, got {value!r}")
    if name in minimum and value > SLURM_MAX_COUNT:  # train.devices (gpus per node) must fit as well
        raise LaunchError(f"{where} must be <= {SLURM_MAX_COUNT} (sbatch reads 32-bit counts), got {value}")


class LaunchError(ConfigError):
    """Bad submit input (cluster file, flag, config, task list); the message names the file/key/value."""


@dataclass
class ClusterDefaults:
    """The user's cluster file (`$PIPELINE_CLUSTER_CONFIG` or `~/.config/pipeline/cluster.yaml`); flags override it."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None  # e.g. "24:00:00"; None = the partition's default
    mem: str | None = None  # per node, e.g. "64G"; None = the cluster's default per CPU
    cpus_per_task: int | None = None
    gpus_per_node: int = 0
    signal_seconds: int = 90  # USR1 this long before the time limit: time to save a checkpoint and requeue
    modules: list[str] = field(default_factory=list)  # `module load` these first
    setup: list[str] = field(default_factory=list)  # shell lines before srun: conda/venv activation, exports
    container: str | None = None  # prefix inside srun, e.g. "apptainer exec --nv /images/pipeline.sif"
    python: str | None = None  # interpreter in the job; None = the one running `pipeline submit`
    sbatch_extra: list[str] = field(default_factory=list)  # more sbatch options, e.g. "--qos=high"


def cluster_config_path() -> Path | None:
    """`$PIPELINE_CLUSTER_CONFIG`, else `~/.config/pipeline/cluster.yaml` if it exists, else None."""
    env = os.environ.get("PIPELINE_CLUSTER_CONFIG")
    if env:
        return Path(env)
    default = Path.home() / ".config" / "pipeline" / "cluster.yaml"
    return default if default.is_file() else None


def _load(path: Path, what: str) -> dict[str, Any]:
    """`pipeline.config.load_mapping`, its error raised as a LaunchError (same one-line message)."""
    try:
        return load_mapping(path, what)
    except LaunchError:
        raise
    except ConfigError as err:
        raise LaunchError(str(err)) from err


def load_cluster_defaults(path: Path | None) -> ClusterDefaults:
    """Read and check the cluster file; an unknown key is an error naming the file and key."""
    if path is None:
        return ClusterDefaults()
    values = _load(path, "cluster config")
    reject_unknown(
        values, [f.name for f in dataclasses.fields(ClusterDefaults)], str(path), error=LaunchError
    )
    out = ClusterDefaults()
    for key, value in values.items():
        default = getattr(out, key)
        if isinstance(default, list):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LaunchError(f"{path}: key '{key}' must be a list of strings, got {value!r}")
        elif key in ("cpus_per_task", "gpus_per_node", "signal_seconds"):
            if value is not None:
                check_slurm_value(key, value, f"{path}: key '{key}'")
        elif value is not None:
            value = str(value)
            check_slurm_value(key, value, f"{path}: key '{key}'")
        setattr(out, key, value)
    return out


def resolve_run_dir(configs: list[str], overrides: list[str] = ()) -> Path:
    """`run_dir`, else `runs/<name>`, from the YAML files merged left to right and `name=`/`run_dir=` overrides.

    Only these two keys are read: full validation belongs to the trainer and would import torch here.
    """
    values: dict[str, Any] = {}
    for path in map(Path, configs):
        data = _load(path, "config file")
        values.update({k: data[k] for k in ("name", "run_dir") if k in data})
    for text in overrides:
        key, _, value = text.partition("=")
        if key in ("name", "run_dir"):
            values[key] = yaml.safe_load(value)
    return Path(values.get("run_dir") or f"runs/{values.get('name') or 'run'}")


@dataclass
class JobSpec:
    """Everything one sbatch script needs; `build_job` fills it from flags and cluster defaults."""

    job_name: str
    run_dir: Path  # absolute; for an array, the sweep directory
    workdir: Path  # the job starts here (relative config paths resolve from it)
    configs: list[str]
    overrides: list[str]
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    signal_seconds: int = 90
    array: str | None = None  # e.g. "0-2" or "0-9%4"; None = not an array
    modules: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    container: str | None = None
    python: str = sys.executable
    sbatch_extra: list[str] = field(default_factory=list)
    command: list[str] | None = None  # replaces `<python> -m pipeline train` (tests run a stand-in)

    @property
    def slurm_dir(self) -> Path:
        return self.run_dir / "slurm"

    @property
    def task_file(self) -> Path:
        return self.run_dir / TASK_FILE

    @property
    def template(self) -> str:
        if self.array is not None:
            return "array.sbatch"
        return "multi_node.sbatch" if self.nodes > 1 else "single_node.sbatch"


def build_job(
    cluster: ClusterDefaults,
    configs: list[str],
    overrides: list[str] = (),
    *,
    workdir: Path | None = None,
    **flags: Any,
) -> JobSpec:
    """Merge cluster defaults with flags (a flag left as None keeps the default) and check the combination."""
    chosen = {k: v for k, v in flags.items() if v is not None}
    unknown = set(chosen) - {f.name for f in dataclasses.fields(JobSpec)}
    if unknown:
        raise LaunchError(f"unknown job option(s): {', '.join(sorted(unknown))}")
    # each flag on its own, before combinations: the message names that flag
    for key, value in chosen.items():
        check_slurm_value(key, value, _flag(key))
    workdir = (workdir or Path.cwd()).resolve()
    run_dir = resolve_run_dir(list(configs), list(overrides))
    run_dir = run_dir if run_dir.is_absolute() else workdir / run_dir
    base = {k: v for k, v in dataclasses.asdict(cluster).items() if v is not None}
    merged = {**base, **chosen}
    gpus = int(merged.get("gpus_per_node", 0))
    tasks = merged.get("tasks_per_node")
    if gpus and tasks and tasks != gpus:
        raise LaunchError(
            f"--ntasks-per-node={tasks} != --gpus-per-node={gpus}: Lightning needs one task per GPU"
        )
    merged["tasks_per_node"] = int(tasks or gpus or 1)
    for key in ("nodes", "tasks_per_node", "signal_seconds"):
        if int(merged.get(key, 1)) < 1:
            raise LaunchError(f"{_flag(key)} must be >= 1, got {merged[key]}")
    merged.setdefault("job_name", run_dir.name)
    return JobSpec(
        run_dir=run_dir, workdir=workdir, configs=list(configs), overrides=list(overrides), **merged
    )


def _flag(key: str) -> str:
    """The `pipeline submit` flag of a job key (sbatch's own spelling: --ntasks-per-node)."""
    return "--ntasks-per-node" if key == "tasks_per_node" else f"--{key.replace('_', '-')}"


def parse_array_spec(spec: str) -> list[int]:
    """Indices of an sbatch `--array` spec: "0-4", "1,3,5", "0-9:3", each optionally with "%K" (throttle)."""
    indices: list[int] = []
    body = spec.split("%", 1)[0]
    try:
        for part in body.split(","):
            rng, _, step = part.partition(":")
            lo, _, hi = rng.partition("-")
            indices.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    except ValueError as err:
        raise LaunchError(f"--array {spec!r}: expected e.g. 0-4, 1,3,5, 0-9:3 or 0-9%2") from err
    if not indices or min(indices) < 0:
        raise LaunchError(f"--array {spec!r}: no valid task indices")
    return indices


def read_tasks(path: Path) -> list[list[str]]:
    """The array's task lines (line i = task i), split like the job's bash will split them."""
    if not path.is_file():
        raise LaunchError(
            f"array task file not found: {path} (write it with `pipeline sweep` or pass --task)"
        )
    tasks = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise LaunchError(f"{path}:{number}: cannot split {line!r}: {err}") from err
        if not words:
            raise LaunchError(f"{path}:{number}: empty line (line i is task i-1; remove blank lines)")
        tasks.append(words)
    return tasks


def task_run_dir(words: list[str]) -> Path:
    """Run directory of one task line: its words without '=' are config paths, the others overrides."""
    return resolve_run_dir([w for w in words if "=" not in w], [w for w in words if "=" in w])


def write_tasks(path: Path, tasks: list[list[str]]) -> None:
    """The array's task file, one shell-quoted line per task (atomically: a running array task reads it)."""
    from pipeline.scaling.records.json_file import write_text_atomic

    write_text_atomic(path, "".join(shlex.join(words) + "\n" for words in tasks))


def check_array(job: JobSpec, n_tasks: int) -> None:
    """Every index the spec names must have a line in the task file."""
    top = max(parse_array_spec(job.array or ""))
    if top >= n_tasks:
        raise LaunchError(f"--array {job.array}: task {top} but {job.task_file} has only {n_tasks} line(s)")


def _quote(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def trainer_overrides(job: JobSpec) -> list[str]:
    """The `key=value`s the job adds before the user's overrides: its node and task counts, CPU without GPUs."""
    train = [f"train.num_nodes={job.nodes}", f"train.devices={job.tasks_per_node}"]
    return train if job.gpus_per_node else [*train, "train.accelerator=cpu"]


def template_values(job: JobSpec) -> dict[str, str]:
    """Placeholder values; optional #SBATCH lines are left out rather than rendered empty."""
    optional = {
        "cpus-per-task": job.cpus_per_task,
        "gpus-per-node": job.gpus_per_node or None,
        "mem": job.mem,
        "time": job.time,
        "partition": job.partition,
        "account": job.account,
    }
    sbatch = [f"#SBATCH --{k}={v}" for k, v in optional.items() if v is not None]
    sbatch += [f"#SBATCH {x}" if x.startswith("-") else x for x in job.sbatch_extra]
    setup = ([f"module load {' '.join(job.modules)}"] if job.modules else []) + list(job.setup)
    command = job.command or [job.python, "-m", "pipeline", "train"]
    launcher = (job.container + " " if job.container else "") + _quote(command)
    train = trainer_overrides(job)
    output = job.slurm_dir / ("%A_%a.out" if job.array is not None else "%j.out")
    return {
        "job_name": job.job_name,
        "nodes": str(job.nodes),
        "tasks_per_node": str(job.tasks_per_node),
        "output": str(output),
        "slurm_dir": shlex.quote(str(job.slurm_dir)),
        "workdir": str(job.workdir),
        "signal_seconds": str(job.signal_seconds),
        "array": job.array or "",
        "optional_sbatch": "\n".join(sbatch),
        "setup": "\n".join(setup),
        "launcher": launcher,
        "configs": _quote([x for c in job.configs for x in ("--config", c)]),
        "train_overrides": _quote(train + list(job.overrides)),
        "task_file": shlex.quote(str(job.task_file)),
    }


def fill(template: str, values: dict[str, str], source: str = "template") -> str:
    """Replace `{{name}}`; a line holding only a placeholder that renders empty is dropped."""
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise LaunchError(f"{source}: unknown placeholder(s) {', '.join(missing)}")
    lines = []
    for line in template.splitlines():
        rendered = _PLACEHOLDER.sub(lambda m: values[m.group(1)], line)
        if rendered.strip() or not _PLACEHOLDER.search(line):
            lines.append(rendered)
    return "\n".join(lines) + "\n"


def render(job: JobSpec, template_dir: Path = TEMPLATE_DIR) -> str:
    """The sbatch script text for `job`, from `template_dir/<single_node|multi_node|array>.sbatch`."""
    path = template_dir / job.template
    return fill(path.read_text(), template_values(job), str(path))
