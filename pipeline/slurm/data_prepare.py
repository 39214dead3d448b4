"""`pipeline data prepare`: the data layer's command (`pipeline.data.prepare`), plus `--slurm`, which splits a
parallel-file / TSV preparation over a SLURM job array.

With `--slurm`, phase 1 of the streamed preparation (`pipeline.data.stream_prepare`: one counting pass, BPE on a
bounded sample) runs here, on the submitting node, or with `--plan-job` as a first job (the options and input files
are checked here either way), and writes the plan into the output's temporary dir (`.<out>.tmp-staged/`, which must
be on a file system the compute nodes share). Then:

- a job array, one task per input range: `pipeline data prepare --out OUT --encode-range R` (after the plan job,
  if any, succeeded);
- a merge job, `--dependency=afterok` on the array (`--kill-on-invalid-dep=yes`: cancelled if a task fails):
  `pipeline data prepare --out OUT --merge`, which writes the shards and the manifest and renames the temp dir onto
  OUT. They are byte-identical to a local run's, whatever `--ranges` is (the train buckets are a function of the
  seed and the pair index, not of the split).

Scripts, logs and `jobs.txt` go to `<out>.slurm/slurm/`. A failed range is rerun with
`sbatch --array=R <out>.slurm/slurm/encode.sbatch` (it rewrites its parts whole), then the merge with
`sbatch <out>.slurm/slurm/merge.sbatch`; a merge with a range missing names it. Rendering, cluster defaults and
submission are `render.py`'s and `submit.py`'s; the template is `slurm/data_prepare.sbatch`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pipeline.data import prepare as data_prepare
from pipeline.data import staged_prepare as staged
from pipeline.data.memory_batches import MEMORY_TASKS
from pipeline.data.prepare import merge_prepared
from pipeline.data.stream_prepare import SCRATCH, encode_range

if TYPE_CHECKING:
    from pipeline.slurm.render import JobSpec

TEMPLATE = "data_prepare.sbatch"


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    data_prepare.add_prepare_arguments(parser)
    group = parser.add_argument_group("SLURM (--slurm; parallel files / TSV)")
    group.add_argument("--slurm", action="store_true",
                       help="plan, encode the input's ranges as a job array, merge in a job after it")  # fmt: skip
    group.add_argument("--ranges", type=int, default=8, help="array tasks, one contiguous input range each")
    group.add_argument("--plan-job", action="store_true",
                       help="plan in a job of its own (one pass over the input + BPE) instead of here")  # fmt: skip
    group.add_argument("--max-parallel", type=int, help="at most this many array tasks at once (--array %%N)")
    group.add_argument(
        "--partition", help="SLURM partition (default: cluster file, else the cluster's default)"
    )
    group.add_argument("--time", help="time limit per job, e.g. 2:00:00")
    group.add_argument("--mem", help="memory per job, e.g. 8G")
    group.add_argument("--cpus-per-task", type=int, help="cores per job (the encoder's threads)")
    group.add_argument("--account", help="SLURM account to charge (default: cluster file, if any)")
    group.add_argument("--dry-run", action="store_true", help="print the scripts; plan and submit nothing")
    # The stages the jobs run (slurm/data_prepare.sbatch), on the out dir's staged temp dir:
    parser.add_argument("--plan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--encode-range", type=int, metavar="R", help=argparse.SUPPRESS)
    parser.add_argument("--merge", action="store_true", help=argparse.SUPPRESS)


def run_prepare(args: argparse.Namespace) -> int:
    from pipeline.slurm.render import LaunchError

    try:
        if args.plan:
            plan = staged.plan_request(args.out)
            print(
                f"planned {plan['pairs']:,} pairs in {plan['n_ranges']} ranges in {staged.staged_dir(args.out)}"
            )
            return 0
        if args.encode_range is not None:
            print(f"wrote {encode_range(staged.staged_dir(args.out) / SCRATCH, args.encode_range)}")
            return 0
        if args.merge:
            # in a job, its own cores (SLURM_CPUS_PER_TASK, unset without --cpus-per-task: one), not the node's
            in_job = "SLURM_JOB_ID" in os.environ
            workers = int(os.environ.get("SLURM_CPUS_PER_TASK", 1)) if in_job else args.workers
            manifest = merge_prepared(staged.staged_dir(args.out), workers)
            print(f"prepared {manifest['corpus']} in {args.out}; dataset hash {manifest['dataset_hash']}")
            return 0
        if args.slurm:
            return submit_prepare(args)
        if args.task in MEMORY_TASKS:  # generated, not read: no corpus, tokenizer or ranges
            from pipeline.data.memory_shards import run_memory_prepare

            return run_memory_prepare(args.task, args.task_keys, args.out, args.shard_size, args.force)
    except (LaunchError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"pipeline data prepare: error: {err}", file=sys.stderr)
        return 2
    return data_prepare.run_prepare(args)


def submit_prepare(args: argparse.Namespace) -> int:
    """Plan (here, or as a first job), then submit the encode array and the merge job; print their ids."""
    from pipeline.slurm import render as sr
    from pipeline.slurm.submit import record_job, submit_script

    if args.task != "translation":
        raise ValueError(f"--slurm prepares --task translation only, got --task {args.task}")
    if args.ranges < 1:
        raise ValueError(f"--ranges must be >= 1, got {args.ranges}")
    out = Path(args.out).resolve()
    cluster = sr.load_cluster_defaults(sr.cluster_config_path())  # a bad cluster file fails before the plan
    flags = {"cpus_per_task": args.cpus_per_task, "mem": args.mem, "time": args.time, "partition": args.partition,
             "account": args.account}  # fmt: skip
    base = sr.build_job(cluster, [], [f"run_dir={out}.slurm"], nodes=1, gpus_per_node=0, tasks_per_node=1,
                        job_name=f"prepare-{out.name}", **flags)  # fmt: skip
    base = dataclasses.replace(base, overrides=[], command=[base.python, "-m", "pipeline", "data", "prepare",
                                                            "--out", str(out)])  # fmt: skip
    array = f"0-{args.ranges - 1}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    stages = {"plan": "--plan"} if args.plan_job else {}
    stages.update(encode='--encode-range "$SLURM_ARRAY_TASK_ID"', merge="--merge")
    scripts = {
        name: _render(sr, dataclasses.replace(base, job_name=f"{base.job_name}-{name}",
                                              array=array if name == "encode" else None), stage)
        for name, stage in stages.items()
    }  # fmt: skip
    if args.dry_run:
        for text in scripts.values():
            print(text, end="")
        print(f"# scripts for {out}; not planned or submitted (--dry-run)", file=sys.stderr)
        return 0
    source = data_prepare.source_from_args(args)
    plan = staged.plan_staged(source, out, args.ranges, vocab_size=args.vocab_size, max_len=args.max_len,
                              shard_size=args.shard_size, seed=args.seed, limit=args.limit, overlong=args.overlong,
                              force=args.force, defer=args.plan_job)  # fmt: skip
    base.slurm_dir.mkdir(parents=True, exist_ok=True)
    paths, ids = {}, {}
    after: list[str] = []
    for name, text in scripts.items():
        paths[name] = base.slurm_dir / f"{name}.sbatch"
        paths[name].write_text(text)
        ids[name] = submit_script(paths[name], *(["--array=" + array] if name == "encode" else []), *after)
        record_job(base.slurm_dir, ids[name], paths[name])
        after = [f"--dependency=afterok:{ids[name]}", "--kill-on-invalid-dep=yes"]
    if args.plan_job:
        print(f"{ids['plan']}: plan of {args.ranges} ranges ({paths['plan']})")
    else:
        print(f"planned {plan['pairs']:,} pairs in {args.ranges} ranges ({staged.staged_dir(out)})")
    print(f"{ids['encode']}: encode array {array} ({paths['encode']})")
    print(
        f"{ids['merge']}: merge after it; shards and manifest.json will appear in {out} (logs: {base.slurm_dir})"
    )
    print(f"a failed range R: `sbatch --array=R {paths['encode']}`, then `sbatch {paths['merge']}`")
    return 0


def _render(sr: ModuleType, job: JobSpec, stage: str) -> str:
    """`slurm/data_prepare.sbatch` for `job`; `stage` is what srun's command gets appended (bash, unquoted)."""
    path = sr.TEMPLATE_DIR / TEMPLATE
    return sr.fill(path.read_text(), {**sr.template_values(job), "stage": stage}, str(path))
