"""Stand-in for `pipeline train` as a SLURM job payload: the same command line, no torch, a fraction of a second.

It mimics the trainer's contract with the job scripts: `--resume auto` continues from the run's checkpoint; on
SIGUSR1 it saves a checkpoint and exits with status 75, which makes the job script requeue the job (as
`pipeline/preemption.py` does).
Keys it reads (from the YAML files or `key=value` overrides): `run_dir`/`name`, `fake.steps` (steps to run),
`fake.until_signal` (on a fresh start, step until USR1 arrives). Each rank writes `rank<PROCID>.json` with what it
saw; rank 0 writes `csv/version_0/metrics.csv` the way Lightning's CSVLogger does, so `pipeline status` can read it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import time
from pathlib import Path

import yaml


def read_values(configs: list[str], overrides: list[str]) -> dict:
    values: dict = {}
    for path in configs:
        values.update(yaml.safe_load(Path(path).read_text()) or {})
    for text in overrides:
        key, _, raw = text.partition("=")
        values[key] = yaml.safe_load(raw)
    return values


def log_metric(run_dir: Path, step: int) -> None:
    path = run_dir / "csv" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["epoch", "step", "train/loss", "valid/loss"])
        writer.writerow([0, step, f"{10.0 / (step + 1):.4f}", ""])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--resume")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    values = read_values(args.config, args.overrides)
    run_dir = Path(values.get("run_dir") or f"runs/{values.get('name', 'run')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    ckpt = run_dir / "ckpt.json"
    start = json.loads(ckpt.read_text())["step"] if args.resume == "auto" and ckpt.exists() else 0

    signalled: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: signalled.append(signum))
    # Tells the test that the handler is in place and it may send USR1.
    (run_dir / f"started.{restart}.rank{rank}").touch()

    steps = int(values.get("fake.steps", 3))
    until_signal = bool(values.get("fake.until_signal", False)) and start == 0
    step = start
    while until_signal or step < start + steps:
        if signalled:
            if rank == 0:
                ckpt.write_text(json.dumps({"step": step}))
            return 75  # checkpointed on SIGUSR1: the job script requeues
        time.sleep(0.05)
        step += 1
        if rank == 0:
            log_metric(run_dir, step)

    record = {
        "rank": rank,
        "ntasks": int(os.environ.get("SLURM_NTASKS", "1")),
        "restart_count": restart,
        "start_step": start,
        "final_step": step,
        "configs": args.config,
        "overrides": args.overrides,
        "resume": args.resume,
        "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
    (run_dir / f"rank{rank}.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
