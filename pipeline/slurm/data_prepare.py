"""`pipeline data prepare`: the data layer's command (`pipeline.data.prepare`), plus `--slurm`, which splits a
parallel-file / TSV preparation over a SLURM job array.

With `--slurm`, phase 1 of the streamed preparation (`pipeline.data.stream_prepare`: one counting pass, BPE on a
bounded sample) runs here, on the submitting node, and writes the plan into the output's temporary dir
(`.<out>.tmp-staged/`, which must be on a file system the compute nodes share). Then:

- a job array, one task per input range: `pipeline data prepare --out OUT --encode-range R`;
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
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pipeline.data import prepare as data_prepare

if TYPE_CHECKING:
    from pipeline.slurm.render import JobSpec

TEMPLATE = "data_prepare.sbatch"


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    data_prepare.add_prepare_arguments(parser)
    group = parser.add_argument_group("SLURM (--slurm; parallel files / TSV)")
    group.add_argument("--slurm", action="store_true",
                       help="plan here, encode the input's ranges as a job array, merge in a job after it")  # fmt: skip
    group.add_argument("--ranges", type=int, default=8, help="array tasks, one contiguous input range each")
    group.add_argument("--max-parallel", type=int, help="at most this many array tasks at once (--array %%N)")
    group.add_argument(
        "--partition", help="SLURM partition (default: cluster file, else the cluster's default)"
    )
    group.add_argument("--time", help="time limit per job, e.g. 2:00:00")
    group.add_argument("--mem", help="memory per job, e.g. 8G")
    group.add_argument("--cpus-per-task", type=int, help="cores per array task (the encoder's threads)")
    group.add_argument("--account", help="SLURM account to charge (default: cluster file, if any)")
    group.add_argument(
        "--dry-run", action="store_true", help="print the two scripts; plan and submit nothing"
    )


def run_prepare(args: argparse.Namespace) -> int:
    if not args.slurm:
        return data_prepare.run_prepare(args)
    from pipeline.slurm.render import LaunchError

    try:
        return submit_prepare(args)
    except (LaunchError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"pipeline data prepare: error: {err}", file=sys.stderr)
        return 2


def submit_prepare(args: argparse.Namespace) -> int:
    """Plan, then submit the encode array and the merge job; print their ids and where the output will be."""
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
    encode = dataclasses.replace(base, array=array, job_name=f"{base.job_name}-encode")
    merge = dataclasses.replace(base, job_name=f"{base.job_name}-merge")
    scripts = {
        "encode": _render(sr, encode, '--encode-range "$SLURM_ARRAY_TASK_ID"'),
        "merge": _render(sr, merge, "--merge"),
    }
    if args.dry_run:
        for text in scripts.values():
            print(text, end="")
        print(f"# scripts for {out}; not planned or submitted (--dry-run)", file=sys.stderr)
        return 0
    source = data_prepare.source_from_args(args)
    plan = data_prepare.plan_staged(source, out, args.ranges, vocab_size=args.vocab_size, max_len=args.max_len,
                                    shard_size=args.shard_size, seed=args.seed, limit=args.limit,
                                    overlong=args.overlong, force=args.force)  # fmt: skip
    base.slurm_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, text in scripts.items():
        paths[name] = base.slurm_dir / f"{name}.sbatch"
        paths[name].write_text(text)
    encode_id = submit_script(paths["encode"], f"--array={array}")
    record_job(base.slurm_dir, encode_id, paths["encode"])
    merge_id = submit_script(paths["merge"], f"--dependency=afterok:{encode_id}", "--kill-on-invalid-dep=yes")
    record_job(base.slurm_dir, merge_id, paths["merge"])
    print(f"planned {plan['pairs']:,} pairs in {args.ranges} ranges ({data_prepare.staged_dir(out)})")
    print(f"{encode_id}: encode array {array} ({paths['encode']})")
    print(
        f"{merge_id}: merge after it; shards and manifest.json will appear in {out} (logs: {base.slurm_dir})"
    )
    print(f"a failed range R: `sbatch --array=R {paths['encode']}`, then `sbatch {paths['merge']}`")
    return 0


def _render(sr: ModuleType, job: JobSpec, stage: str) -> str:
    """`slurm/data_prepare.sbatch` for `job`; `stage` is what srun's command gets appended (bash, unquoted)."""
    path = sr.TEMPLATE_DIR / TEMPLATE
    return sr.fill(path.read_text(), {**sr.template_values(job), "stage": stage}, str(path))
