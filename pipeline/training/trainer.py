"""`pipeline train`: wire config, model, data, strategy, loggers and callbacks into a Lightning Trainer and fit.

The only file that knows all the parts. Models and data are built from the config; SLURM, DDP and DeepSpeed are
Lightning's job (its SLURM environment reads the `SLURM_*` variables that `srun` sets).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pipeline.config import MEMORY_TASKS, RunConfig, describe_keys, format_config, load_config, save_config
from pipeline.training.process_exit import TrainProcess, exit_process, release_process_group


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", default=[], metavar="YAML",
        help="config file; repeat to merge several, later files win (e.g. configs/tiny/lstm.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--resume", default="auto", metavar="auto|fresh|PATH",
        help="auto (default): continue from the newest verified checkpoint of the run directory; refuses (and "
        "changes nothing) when checkpoints exist but none verifies, when the directory has logs but no "
        "checkpoints/, or when a checkpoint's config differs. fresh (alias: never): start at step 0, first moving "
        "the directory's previous checkpoints and logs to <run_dir>/previous-<time>/. PATH: that checkpoint file",
    )  # fmt: skip
    parser.add_argument(
        "--print-config", action="store_true",
        help="print the resolved config (files + overrides, every default filled in) as YAML and exit",
    )  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides applied after the files, e.g. train.max_steps=200 model.d_model=256 train.devices=2",
    )  # fmt: skip
    parser.epilog = (
        "config keys (in a --config YAML or as KEY=VALUE; model.* keys depend on model.arch, see "
        "docs/interfaces.md):\n" + describe_keys()
    )


def run_train(args: argparse.Namespace) -> int:
    """`pipeline train` called in-process (tests, `main`): the exit status."""
    return train(args).status


def main_train(args: argparse.Namespace) -> NoReturn:
    """`pipeline train` as the console script runs it: train, then end the process the way a training process
    must (`exit_process`: no interpreter teardown after a distributed run)."""
    exit_process(train(args))


def train(args: argparse.Namespace) -> TrainProcess:
    """Load the config once, fit, print the summary; the exit status and whether this process was distributed."""
    from pipeline.training.user_errors import report_user_error

    process = TrainProcess()
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(format_config(cfg), end="")
            return process
        summary = fit(cfg, resume=args.resume, process=process)
    except Exception as err:
        # bad input (config, corpus, data dir, checkpoint, a non-finite loss): one clear line and exit 2 (1 for a
        # non-finite loss); a bug keeps its traceback, and PIPELINE_DEBUG=1 shows it for all (user_errors.py)
        status = report_user_error(err, prog="pipeline train: ")
        if status is None:
            raise
        process.status = status
        return process
    if summary.get("rank", 0) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "rank"}, indent=2))
    from pipeline.training.preemption import exit_code

    process.status = exit_code(
        summary.get("preempted")
    )  # 75 after SIGUSR1: the sbatch script requeues the job
    return process


def _strategy(cfg: RunConfig, accelerator: str) -> Any:
    t = cfg.train
    world = t.devices * t.num_nodes
    if t.strategy == "deepspeed":
        from pipeline.training.deepspeed_strategy import build_deepspeed_strategy

        return build_deepspeed_strategy(cfg, accelerator)
    if world > 1 or t.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else "nccl")
    return "auto"


def _accelerator(cfg: RunConfig) -> str:
    if cfg.train.accelerator != "auto":
        return "gpu" if cfg.train.accelerator == "cuda" else cfg.train.accelerator
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def _quiet_known_warnings() -> None:
    """Warnings that say nothing about the run: Lightning's hint to use `srun` on any machine that has SLURM
    installed (a local run is meant to be local), a deprecation inside Lightning's own pytree helper, and its
    advertisement for a cloud logger at every Trainer start."""
    import warnings

    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # rank_zero_info()'s logger
    if not any(isinstance(f, _DropMessages) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_DropMessages("💡 Tip:"))


def _lstm_recurrence_dtype(cfg: RunConfig) -> str:
    """The dtype cuDNN's LSTM kernels run in under this precision: bf16 only from cuDNN 9.13 (PyTorch #164411;
    #116925 and #88136 show the failure before it), else float32 with a warning (pipeline/cost/precision.py)."""
    from pipeline.cost.precision import check_lstm_precision, cudnn_version

    device = "cuda" if _accelerator(cfg) == "gpu" else "cpu"
    return check_lstm_precision(
        cfg.model["arch"], cfg.train.precision, cudnn_version() if device == "cuda" else None, device
    )


def _share_cpu_threads(cfg: RunConfig, accelerator: str) -> None:
    """On CPU, give each of this node's ranks its share of the cores (unless OMP_NUM_THREADS says otherwise).

    Oversubscribed OpenMP threads spin against each other: two 2-thread ranks on 2 cores ran a tiny LSTM step
    hundreds of times slower than two 1-thread ranks.
    """
    if accelerator != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, cfg.train.devices)))


def _plugins(cfg: RunConfig) -> list[Any]:
    """Atomic checkpoint files; under `srun`, Lightning's SLURM environment for ranks and addresses.

    Lightning's own SLURM requeue handler is off: `PreemptionCallback` checkpoints at a step boundary on every rank
    and requeues (see preemption.py).
    """
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from pipeline.training.checkpoint_callbacks import AtomicCheckpointIO

    plugins: list[Any] = [] if cfg.train.strategy == "deepspeed" else [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def _loggers(cfg: RunConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    # One CSV version per start: with version=None, Lightning's CSVLogger takes the next free csv/version_K, so a
    # resumed run never writes over an interrupted attempt's rows. Readers (logged_metrics.py) merge every
    # csv/version_*/metrics.csv, later versions winning for a repeated step.
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="csv")]
    if cfg.logging.wandb and cfg.logging.wandb_mode != "disabled":
        from pipeline.training.wandb_logger import make_wandb_logger

        loggers.append(make_wandb_logger(cfg, run_dir))
    return loggers


@dataclass
class RunCallbacks:
    """The training behaviour, as named callbacks wired to each other explicitly.

    `as_list()` gives Lightning's order, which matters at a step's end: the loader position and the token count
    are updated before the preemption check and the checkpoint saver read them.
    """

    loader_position: Any
    throughput: Any
    lr_monitor: Any
    rng_state: Any
    checkpoints: Any
    preemption: Any
    grad_reach: Any = None
    nonfinite: Any = None
    clock: Any = None
    accuracy_stop: Any = None  # memory tasks: `train.stop_at_accuracy` (accuracy_stop.py)

    def as_list(self) -> list[Any]:
        first = [c for c in (self.grad_reach, self.nonfinite, self.clock) if c is not None]
        last = [c for c in (self.accuracy_stop,) if c is not None]
        return first + [
            self.loader_position,
            self.throughput,
            self.lr_monitor,
            self.rng_state,
            self.preemption,
            self.checkpoints,
            *last,
        ]


def make_callbacks(cfg: RunConfig, run_dir: Path, progress: Any = None) -> RunCallbacks:
    """`progress`: a sweep's (rich Progress, task id), advanced by the run's clock."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from pipeline.training.checkpoint_callbacks import RngStateCallback, VerifiedModelCheckpoint
    from pipeline.training.checkpoint_files import checkpoint_dir
    from pipeline.training.datamodule import LoaderPositionCallback
    from pipeline.training.nonfinite import NonFiniteLossCallback
    from pipeline.training.preemption import PreemptionCallback
    from pipeline.training.run_clock import RunClock
    from pipeline.training.throughput import ThroughputCallback

    t = cfg.train
    throughput = ThroughputCallback(t.log_every)
    checkpoints = VerifiedModelCheckpoint(
        token_counter=throughput,
        dirpath=str(checkpoint_dir(run_dir)),
        filename="step={step}",
        auto_insert_metric_name=False,
        every_n_train_steps=t.ckpt_every or t.val_every,
        save_last=True,
        save_top_k=t.keep_checkpoints,
        monitor="step",
        mode="max",
        enable_version_counter=False,  # a resumed run overwrites last.ckpt, never writes last-v1.ckpt beside it
    )
    grad_reach = None
    if t.grad_reach_every:
        from pipeline.training.grad_reach import GradReachCallback

        grad_reach = GradReachCallback(
            t.grad_reach_every, run_dir, partitioned=t.strategy == "deepspeed" and t.zero_stage == 3
        )
    accuracy_stop = None
    if cfg.data.task in MEMORY_TASKS:
        from pipeline.training.accuracy_stop import StopAtAccuracy

        accuracy_stop = StopAtAccuracy(t.stop_at_accuracy, checkpoints)
    return RunCallbacks(
        loader_position=LoaderPositionCallback(),
        throughput=throughput,
        lr_monitor=LearningRateMonitor("step"),
        rng_state=RngStateCallback(),
        checkpoints=checkpoints,
        preemption=PreemptionCallback(checkpoints),
        grad_reach=grad_reach,
        nonfinite=NonFiniteLossCallback(t.max_nonfinite_steps, partitioned=t.strategy == "deepspeed"),
        clock=RunClock(progress),
        accuracy_stop=accuracy_stop,
    )


def _progress_bar(cfg: RunConfig) -> list[Any]:
    if not cfg.logging.progress_bar:
        return []
    from pipeline.training.progress_bar import StepProgressBar

    return [StepProgressBar()]


def build_trainer(
    cfg: RunConfig,
    run_dir: Path,
    extra_callbacks: list[Any] | None = None,
    callbacks: RunCallbacks | None = None,
) -> Any:
    """The Lightning Trainer of a run; `callbacks` defaults to `make_callbacks(cfg, run_dir)`."""
    import lightning as L

    t = cfg.train
    accelerator = _accelerator(cfg)
    _share_cpu_threads(cfg, accelerator)
    callbacks = callbacks or make_callbacks(cfg, run_dir)
    return L.Trainer(
        accelerator=accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(cfg, accelerator),
        precision=t.precision,
        max_steps=t.max_steps,
        val_check_interval=min(t.val_every, t.max_steps),  # a run always validates at its last step
        check_val_every_n_epoch=None,
        limit_val_batches=t.val_batches or None,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every,
        gradient_clip_val=cfg.optim.grad_clip or None,
        accumulate_grad_batches=t.accumulate,
        deterministic=t.deterministic,
        default_root_dir=str(run_dir),
        logger=_loggers(cfg, run_dir),
        callbacks=callbacks.as_list() + (extra_callbacks or []) + _progress_bar(cfg),
        plugins=_plugins(cfg),
        enable_progress_bar=cfg.logging.progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,  # the streaming loader splits by rank itself
    )


def fit(
    cfg: RunConfig,
    resume: str = "auto",
    extra_callbacks: list[Any] | None = None,
    process: TrainProcess | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Train to `train.max_steps` (or to `train.stop_at_accuracy`), evaluate, and return a summary dict; rank 0
    writes it to ``run_dir/summary.json`` and, once the run has finished, its record ``result.json``.

    A run that had already finished (resumed from its final checkpoint: Lightning trains nothing) keeps its
    summary, or is validated again when it has none. `cfg` is used as given (validated by `load_config`);
    `process.distributed` is set if this process took part in a process group, which `exit_process` must know;
    `progress`: see `make_callbacks`."""
    import lightning as L

    from pipeline.training.checkpoint_files import resume_checkpoint
    from pipeline.training.datamodule import StreamingDataModule
    from pipeline.training.evaluate import final_evaluation
    from pipeline.training.finished_run import end_of_run, finished_summary
    from pipeline.training.module import Seq2SeqModule
    from pipeline.training.wandb_logger import finish_wandb

    run_dir = cfg.resolved_run_dir
    os.environ.setdefault("WANDB_MODE", cfg.logging.wandb_mode)
    _quiet_known_warnings()
    if cfg.data.task == "lm" and cfg.train.eval_contexts:  # a bad list fails now, not after the training
        from pipeline.training.truncation_run import parse_contexts

        parse_contexts(cfg.train.eval_contexts, int(cfg.data.context))
    # refuses unverified, foreign or missing state; --resume fresh moves the previous state aside
    ckpt_path = resume_checkpoint(resume, cfg)
    if ckpt_path is not None and cfg.train.strategy == "deepspeed":
        # a ZeRO checkpoint fixes its rank count: fail now, not in DeepSpeed
        from pipeline.training.deepspeed_strategy import check_zero_resume

        check_zero_resume(ckpt_path, cfg)
    recurrence_dtype = _lstm_recurrence_dtype(cfg)  # before any data is read: a refusal costs nothing
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = StreamingDataModule(cfg)
    module = Seq2SeqModule(cfg)
    if cfg.train.precision.startswith("bf16") and recurrence_dtype != "bfloat16":
        from pipeline.cost.precision import run_recurrence_in

        run_recurrence_in(module.model, recurrence_dtype)  # the LSTMs outside bf16 autocast
    callbacks = make_callbacks(cfg, run_dir, progress)
    trainer = build_trainer(cfg, run_dir, extra_callbacks, callbacks)
    try:
        if trainer.global_rank == 0:
            save_config(cfg, run_dir / "config.yaml")
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        preemption = callbacks.preemption
        if preemption.stopped_by:  # checkpointed on a signal: no evaluation, back to the scheduler quickly
            return {
                "preempted": preemption.stopped_by,
                "steps": trainer.global_step,
                "rank": trainer.global_rank,
            }
        if module.val_loss_by_position is None:  # nothing validated here: finished in an earlier attempt
            kept = finished_summary(cfg, trainer.global_step)
            if kept is not None:
                return end_of_run(cfg, kept, trainer.global_rank, callbacks.clock, kept=True)
            trainer.validate(module, datamodule=datamodule, verbose=False)
        summary = final_evaluation(cfg, trainer, module, callbacks.throughput)
        if callbacks.accuracy_stop is not None and callbacks.accuracy_stop.stopped:
            summary["early_stop"] = callbacks.accuracy_stop.stopped
        return end_of_run(cfg, summary, trainer.global_rank, callbacks.clock)
    finally:
        if trainer.global_rank == 0:
            finish_wandb(trainer.loggers)
        if release_process_group() and process is not None:
            process.distributed = True
