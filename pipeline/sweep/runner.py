"""`pipeline sweep --grid GRID.yaml`: train every (architecture, size, token budget) of a scaling grid and write one
result record per run, locally one after another or as a SLURM job array.

The grid file and how a token budget becomes a run length: `pipeline.sweep.grid`. The record keeps the tokens
actually trained on, FLOPs per token from the model's own estimate at the corpus' mean lengths, and epochs.

Resumable: a run with `result.json` is skipped; an unfinished one resumes from its newest checkpoint
(`--resume auto`); a failed one leaves `error.txt` and the sweep goes on. On SLURM each array task runs
`pipeline sweep --run-one --config ... key=value ...`, the same code path as one local run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L

import pipeline.training.trainer
from pipeline.config import ConfigError, load_config, to_dict
from pipeline.data.prepare import read_manifest
from pipeline.data.tokenizer import PAD_ID
from pipeline.scaling.records import RESULT_FILE, RunRecord, save_json_atomic, save_record
from pipeline.scaling.report import PLAN_FILE
from pipeline.sweep.grid import Grid, PlannedRun, SweepError, load_grid, plan_runs
from pipeline.training.logged_metrics import read_metric
from pipeline.training.run_model import run_model

ERROR_FILE = "error.txt"
MIN_POSITION_SHARE = 0.1  # loss at a target position reached by fewer validation pairs than this is NaN


# ------------------------------------------------------------------------------------------------- one run
def train_run(configs: list[str], overrides: list[str], delete_checkpoints: bool = False,
              progress: Any = None) -> RunRecord | None:  # fmt: skip
    """Train (or resume) one run and write its result.json; returns the record (None on ranks other than 0)."""
    cfg = load_config(configs, overrides)
    run_dir = cfg.resolved_run_dir
    clock = RunClock(progress)
    summary = pipeline.training.trainer.fit(cfg, resume="auto", extra_callbacks=[clock])
    if summary.get("rank", 0) != 0:
        return None
    if summary["steps"] < cfg.train.max_steps:
        raise RuntimeError(f"{run_dir}: stopped at step {summary['steps']} of {cfg.train.max_steps}")
    if summary.get("valid_loss") is None or not summary.get("loss_by_position"):
        # Finished in an earlier attempt that died before writing its record: Lightning skips a loop that is
        # already done, so the final validation has to be run again from the last checkpoint.
        summary.update(validate_checkpoint(cfg))
    train = read_manifest(cfg.data.dir)["splits"]["train"]
    samples = train["samples"]
    src_len, tgt_len = round(train["src_tokens"] / samples), round(train["tgt_tokens"] / samples) + 1  # + EOS
    model = run_model(cfg)
    fpt = float(model.flops_per_token(src_len, tgt_len))
    tokens = int(summary["tokens"])
    final = float(summary["valid_loss"])
    history = list(read_metric(run_dir, "valid/loss").values())
    positions = mask_sparse_positions(summary["loss_by_position"], valid_position_counts(cfg))
    record = RunRecord(
        run=cfg.name, arch=cfg.model["arch"], params=int(summary["params"]),
        non_embedding_params=int(summary["non_embedding_params"]), flops_per_token=fpt, tokens=tokens,
        compute=fpt * tokens, epochs=tokens / (train["tgt_tokens"] + samples), final_valid_loss=final,
        best_valid_loss=min([final, *history]), loss_by_position=positions, wall_time_s=round(clock.elapsed, 2),
        config={**to_dict(cfg), "mean_lengths": {"src": src_len, "tgt": tgt_len},
                "loss_by_position_min_share": MIN_POSITION_SHARE},
    )  # fmt: skip
    save_record(run_dir / RESULT_FILE, record)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    if delete_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return record


def valid_position_counts(cfg: Any) -> list[int]:
    """Real target tokens (EOS included) at each target position over the validation split."""
    from pipeline.data.loader import build_loader

    d = cfg.data
    counts = [0] * (d.max_len + 1)
    for batch in build_loader(d.dir, "valid", batch_tokens=d.batch_tokens, max_len=d.max_len):
        for t, n in enumerate((batch["tgt_out"] != PAD_ID).sum(0).tolist()[: len(counts)]):
            counts[t] += n
    return counts


def mask_sparse_positions(losses: list[float], counts: list[int]) -> list[float]:
    """NaN at target positions reached by fewer than MIN_POSITION_SHARE of the validation pairs: there the mean is
    over a handful of (often EOS) tokens and swings by nats, which reads like a real effect on a position plot."""
    least = MIN_POSITION_SHARE * max(counts, default=0)
    return [
        float(x) if t < len(counts) and counts[t] >= max(least, 1) else math.nan for t, x in enumerate(losses)
    ]


def validate_checkpoint(cfg: Any) -> dict[str, Any]:
    """Validation loss and loss by position of a run's newest checkpoint (one validation pass, no training)."""
    from pipeline.training.checkpoint_files import find_resume_checkpoint
    from pipeline.training.datamodule import StreamingDataModule
    from pipeline.training.module import Seq2SeqModule

    ckpt = find_resume_checkpoint(cfg.resolved_run_dir)
    module = Seq2SeqModule.load_from_checkpoint(str(ckpt), map_location="cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=cfg.train.val_batches or None)  # fmt: skip
    trainer.validate(module, datamodule=StreamingDataModule(cfg), verbose=False)
    return {
        "valid_loss": float(trainer.callback_metrics["valid/loss"]),
        "loss_by_position": module.val_loss_by_position,
    }


class RunClock(L.Callback):
    """Training wall time summed over every attempt of a run (kept in checkpoints, so it survives a resume), and
    the sweep's per-run progress bar. Time lost after the last checkpoint of a killed attempt is not counted."""

    def __init__(self, progress: Any = None) -> None:
        self.before = 0.0  # seconds trained by earlier attempts, restored from the checkpoint
        self.start: float | None = None
        self.progress = progress  # (rich Progress, task id) or None

    @property
    def elapsed(self) -> float:
        return self.before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()
        self._show(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._show(trainer)

    def _show(self, trainer: L.Trainer) -> None:
        if self.progress is not None:
            bar, task = self.progress
            loss = trainer.callback_metrics.get("valid/loss")
            note = f"valid {float(loss):.3f}" if loss is not None else ""
            bar.update(task, completed=trainer.global_step, total=trainer.max_steps, note=note)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before = float(state.get("elapsed", 0.0))
        self.start = None


# ------------------------------------------------------------------------------------------------- the sweep
def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", metavar="YAML", help="grid file, e.g. configs/sweeps/tiny.yaml")
    parser.add_argument("--out", metavar="SWEEP_DIR",
                        help="sweep directory (default: the grid's `out`, else runs/sweeps/<grid name>)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (with --slurm: the rendered array script); train nothing")  # fmt: skip
    parser.add_argument("--only", metavar="SUBSTRING", action="append",
                        help="run only runs whose name contains this (repeatable)")  # fmt: skip
    slurm = parser.add_argument_group("SLURM (with --slurm: one array task per unfinished run)")
    slurm.add_argument("--slurm", action="store_true", help="submit a job array instead of running locally")
    for flag, kind in (("--nodes", int), ("--gpus-per-node", int), ("--ntasks-per-node", int),
                       ("--cpus-per-task", int), ("--mem", str), ("--time", str), ("--partition", str),
                       ("--account", str), ("--signal-seconds", int)):  # fmt: skip
        slurm.add_argument(flag, type=kind, help="per run, as for `pipeline submit` (default: cluster file)")
    slurm.add_argument(
        "--max-parallel", type=int, metavar="K", help="at most K runs at a time (--array=...%%K)"
    )
    # What each array task runs: one run given by its config files and overrides (same code as a local run).
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--resume", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--delete-checkpoints", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)


def sweep_dir_of(grid: Grid, out: str | None) -> Path:
    return Path(out or grid.out or f"runs/sweeps/{grid.name}")


def run_sweep(args: argparse.Namespace) -> int:
    try:
        if args.run_one:
            return _run_one(args)
        if not args.grid:
            raise SweepError("--grid is required (a grid file, e.g. configs/sweeps/tiny.yaml)")
        grid = load_grid(args.grid)
        sweep_dir = sweep_dir_of(grid, args.out)
        world = (args.nodes or 1) * (args.gpus_per_node or args.ntasks_per_node or 1) if args.slurm else 1
        runs = plan_runs(grid, sweep_dir, world)
        plan = [{"name": r.name, "arch": r.arch, "size": r.size, "token_budget": r.budget, "max_steps": r.max_steps}
                for r in runs]  # fmt: skip
        save_json_atomic(sweep_dir / PLAN_FILE, {"grid": str(grid.path), "runs": plan})  # the report's "of N"
        if args.only:
            runs = [r for r in runs if any(s in r.name for s in args.only)]
        todo = [r for r in runs if not (sweep_dir / r.name / RESULT_FILE).is_file()]
        if args.slurm:
            return submit_array(grid, sweep_dir, todo, args)
        if args.dry_run:
            print_plan(runs, sweep_dir)
            return 0
        return run_local(grid, sweep_dir, runs)
    except (SweepError, ConfigError, FileNotFoundError) as err:
        print(f"pipeline sweep: error: {err}", file=sys.stderr)
        return 2


def _run_one(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if (cfg.resolved_run_dir / RESULT_FILE).is_file():
        print(f"{cfg.resolved_run_dir}: finished already ({RESULT_FILE} exists)")
        return 0
    try:
        train_run(args.config, args.overrides, args.delete_checkpoints)
    except Exception:
        _write_error(cfg.resolved_run_dir, traceback.format_exc())
        raise
    return 0


def _write_error(run_dir: Path, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).write_text(text)


def print_plan(runs: list[PlannedRun], sweep_dir: Path) -> None:
    print(f"sweep {sweep_dir}: {len(runs)} runs")
    for r in runs:
        d = sweep_dir / r.name
        state = "done" if (d / RESULT_FILE).is_file() else "failed" if (d / ERROR_FILE).is_file() else "todo"
        print(f"  {r.name:32} {r.budget:>12,} tokens {r.max_steps:>7} steps  {state}")


def run_local(grid: Grid, sweep_dir: Path, runs: list[PlannedRun]) -> int:
    """Every run, one after another in this process; finished runs are skipped, failures recorded and listed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
                record = train_run(run.configs, run.overrides, grid.delete_checkpoints, (bar, task))
                done += 1
                if record is not None:  # None on the other ranks of a multi-device run
                    console.log(f"{run.name}: valid loss {record.final_valid_loss:.4f}, {record.tokens:,} tokens, "
                                f"{record.compute:.3g} FLOPs, {time.perf_counter() - start:.0f} s")  # fmt: skip
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


def submit_array(grid: Grid, sweep_dir: Path, todo: list[PlannedRun], args: argparse.Namespace) -> int:
    """Write `<sweep_dir>/array_configs.txt` (one unfinished run per line) and submit the array template."""
    from pipeline.slurm import render as sr
    from pipeline.slurm.submit import record_job, submit_script

    if not todo:
        print(f"sweep {sweep_dir}: every run has a {RESULT_FILE}; nothing to submit")
        return 0
    sweep_dir = sweep_dir.resolve()
    array = f"0-{len(todo) - 1}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    command = [sys.executable, "-m", "pipeline", "sweep", "--run-one"]
    command += ["--delete-checkpoints"] if grid.delete_checkpoints else []
    flags = {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "tasks_per_node": args.ntasks_per_node,
             "cpus_per_task": args.cpus_per_task, "mem": args.mem, "time": args.time, "partition": args.partition,
             "account": args.account, "signal_seconds": args.signal_seconds, "array": array,
             "job_name": f"sweep-{grid.name}", "command": command}  # fmt: skip
    try:
        cluster = sr.load_cluster_defaults(sr.cluster_config_path())
        # `run_dir=` only names the sweep directory (array files live there); each task line sets its own
        job = dataclasses.replace(sr.build_job(cluster, [], [f"run_dir={sweep_dir}"], **flags), overrides=[])
        sr.write_tasks(job.task_file, [[*r.configs, *r.overrides] for r in todo])
        sr.check_array(job, len(todo))
        text = sr.render(job)
        job.slurm_dir.mkdir(parents=True, exist_ok=True)
        script = job.slurm_dir / "job.sbatch"
        script.write_text(text)
        if args.dry_run:
            print(text, end="")
            print(f"# {len(todo)} tasks in {job.task_file}; script {script}; not submitted (--dry-run)",
                  file=sys.stderr)  # fmt: skip
            return 0
        job_id = submit_script(script)
    except sr.LaunchError as err:
        raise SweepError(str(err)) from err
    record_job(script.parent, job_id, script)
    print(
        f"{job_id}: {len(todo)} runs ({shlex.quote(str(job.task_file))}); watch with `pipeline status {sweep_dir}`"
    )
    return 0
