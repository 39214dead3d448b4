"""One sweep run: train (or resume) it and write its result record (`SWEEP_DIR/<run>/result.json`).

The record keeps the tokens actually trained on, FLOPs per token from the model's own estimate at the corpus' mean
lengths (with and without the output projection), epochs, every validation point, the loss by target position, the
unigram entropy of the validation targets (a run at or above it learned nothing but token frequencies), the seed
and learning rate, and the measured time with the hardware it ran on. Imported only when a run trains, so
`pipeline sweep --help` and `--dry-run` never import Lightning.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

import pipeline.training.trainer
from pipeline.config import RunConfig, load_config, model_vocab_size, to_dict
from pipeline.data.manifest import read_manifest
from pipeline.data.tokenizer import PAD_ID
from pipeline.scaling.analyses.learned_nothing import unigram_entropy
from pipeline.scaling.records.run_record import RESULT_FILE, RunRecord, save_record
from pipeline.sweep.grid import ERROR_FILE
from pipeline.sweep.yardsticks import run_yardsticks
from pipeline.training.logged_metrics import by_steps_trained, read_metric
from pipeline.training.process_exit import TrainProcess
from pipeline.training.run_model import run_model

MIN_POSITION_SHARE = 0.1  # loss at a target position reached by fewer validation pairs than this is NaN


class RunInterrupted(Exception):
    """A run stopped on a signal after saving its checkpoint: not a failure, and not a reason to start the next run."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


def train_run(configs: list[str], overrides: list[str], delete_checkpoints: bool = False,
              progress: Any = None, *, cfg: RunConfig | None = None,
              process: TrainProcess | None = None) -> RunRecord | None:  # fmt: skip
    """Train (or resume) one run and write its result.json; returns the record (None on ranks other than 0).

    `cfg`: the run's config already loaded from `configs` + `overrides` (not loaded again); `process`: see `fit`."""
    cfg = cfg or load_config(configs, overrides)
    run_dir = cfg.resolved_run_dir
    if cfg.data.task == "lm" and cfg.train.eval_contexts:  # a bad list fails now, not after the training
        from pipeline.training.truncation_run import parse_contexts

        parse_contexts(cfg.train.eval_contexts, int(cfg.data.context))
    clock = RunClock(progress)
    summary = pipeline.training.trainer.fit(
        cfg, resume=_resume_mode(run_dir), extra_callbacks=[clock], process=process
    )
    if summary.get("rank", 0) != 0:
        return None
    if summary.get("preempted"):  # checkpointed on SIGTERM/SIGUSR1: the sweep must stop too, not go on
        raise RunInterrupted(
            summary["preempted"],
            f"{run_dir}: {summary['preempted']} at step {summary['steps']}; checkpointed",
        )
    if summary["steps"] < cfg.train.max_steps:
        raise RuntimeError(f"{run_dir}: stopped at step {summary['steps']} of {cfg.train.max_steps}")
    if summary.get("valid_loss") is None or not summary.get("loss_by_position"):
        # Finished in an earlier attempt that died before writing its record: Lightning skips a loop that is
        # already done, so the final validation has to be run again from the last checkpoint.
        summary.update(validate_checkpoint(cfg))
    train = read_manifest(cfg.data.dir)["splits"]["train"]
    src_len, tgt_len, epoch_tokens = mean_lengths(cfg, train)
    model = run_model(cfg)
    fpt = float(model.flops_per_token(src_len, tgt_len, **newton_iterations(cfg, run_dir)))
    tokens = int(summary["tokens"])
    final = float(summary["valid_loss"])
    history = by_steps_trained(read_metric(run_dir, "valid/loss"))
    counts, token_counts = valid_target_counts(cfg)
    positions = mask_sparse_positions(summary["loss_by_position"], counts)
    steps = max(1, int(summary["steps"]))
    # tokens at a validation step: the run's tokens pro rata (batches are bucketed to a near-constant size)
    curve = [{"step": step, "tokens": round(tokens * step / steps), "loss": loss}
             for step, loss in sorted(history.items())]  # fmt: skip
    record = RunRecord(
        run=cfg.name, arch=cfg.arm or cfg.model["arch"], params=int(summary["params"]),
        non_embedding_params=int(summary["non_embedding_params"]), flops_per_token=fpt, tokens=tokens,
        compute=fpt * tokens, epochs=tokens / epoch_tokens, final_valid_loss=final,
        best_valid_loss=min([final, *history.values()]), loss_by_position=positions,
        wall_time_s=round(clock.elapsed, 2),
        config={**to_dict(cfg), "mean_lengths": {"src": src_len, "tgt": tgt_len}, "task": cfg.data.task,
                "loss_by_position_min_share": MIN_POSITION_SHARE},
        seed=cfg.seed, lr=cfg.optim.lr, valid_curve=curve, unigram_entropy=unigram_entropy(token_counts),
        timing=summary.get("timing") or {}, hardware=summary.get("hardware") or {},
        answer_metrics=summary.get("answer_metrics") or {},
        **run_yardsticks(cfg, run_dir, tokens, token_counts),  # issue 32: unigram_xent, KN floors, truncation
    )  # fmt: skip
    save_record(run_dir / RESULT_FILE, record)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    if delete_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return record


def mean_lengths(cfg: Any, train: dict[str, Any]) -> tuple[int, int, int]:
    """(mean source tokens, mean target tokens as trained, target tokens in one epoch) from the train manifest.

    Translation and passages: targets are trained with EOS (+1 each). A language model has no source and each
    stored window of context + 1 tokens trains context + 1 next-token targets (the first from BOS)."""
    samples = max(1, int(train["samples"]))
    if cfg.data.task == "lm":
        return 0, int(cfg.data.context) + 1, samples * (int(cfg.data.context) + 1)
    if cfg.data.task in ("mqar", "copy"):  # decoder-only sequences, stored whole (no EOS added)
        return 0, round(train["tgt_tokens"] / samples), int(train["tgt_tokens"])
    src, tgt = round(train["src_tokens"] / samples), round(train["tgt_tokens"] / samples) + 1  # + EOS
    return src, tgt, int(train["tgt_tokens"]) + samples


def newton_iterations(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """For `recurrence=newton`: the run's mean (forward, backward) scans per solve, read from its logged
    `newton/iters` and `newton/bwd_iters`, so the record's FLOPs are what the solver did, not the cap."""
    if cfg.model.get("recurrence") != "newton":
        return {}
    fwd, bwd = (list(read_metric(run_dir, f"newton/{k}").values()) for k in ("iters", "bwd_iters"))
    if not fwd or not bwd:
        return {}  # nothing logged: the model's own upper bound
    return {"newton_iters": (sum(fwd) / len(fwd), sum(bwd) / len(bwd))}


def valid_target_counts(cfg: Any) -> tuple[list[int], list[int]]:
    """Over the validation split's targets (EOS included; an LM window's context + 1 targets): real tokens at each
    target position, and how often each token id occurs (for the unigram entropy)."""
    import torch

    from pipeline.data.stream.loader import build_loader
    from pipeline.training.run_data import loader_max_len, target_width

    d = cfg.data
    counts = [0] * target_width(d)
    vocab = model_vocab_size(d)
    ids = torch.zeros(vocab, dtype=torch.long)
    for batch in build_loader(d.dir, "valid", batch_tokens=d.batch_tokens, max_len=loader_max_len(d)):
        real = batch["tgt_out"] != PAD_ID
        for t, n in enumerate(real.sum(0).tolist()[: len(counts)]):
            counts[t] += n
        ids += torch.bincount(batch["tgt_out"][real], minlength=vocab)[:vocab]
    return counts, ids.tolist()


def mask_sparse_positions(losses: list[float], counts: list[int]) -> list[float]:
    """NaN at target positions reached by fewer than MIN_POSITION_SHARE of the validation pairs: there the mean is
    over a handful of (often EOS) tokens and swings by nats, which reads like a real effect on a position plot."""
    least = MIN_POSITION_SHARE * max(counts, default=0)
    return [
        float(x) if t < len(counts) and counts[t] >= max(least, 1) else math.nan for t, x in enumerate(losses)
    ]


def _resume_mode(run_dir: Path) -> str:
    """`auto`, or `fresh` for a run directory that holds an earlier attempt's files but no `checkpoints/`.

    That happens when a sweep directory is committed or copied mid-run (checkpoints are not: they are large and
    gitignored). `pipeline train` refuses such a directory, so as not to restart a user's run silently; a sweep run
    has nothing to resume from and a plan to finish, so it starts again at step 0, and `--resume fresh` keeps the
    old files in `<run>/previous-<time>/`."""
    from pipeline.training.checkpoint_files import checkpoint_dir, previous_state

    stale = previous_state(run_dir)
    if not stale or checkpoint_dir(run_dir).is_dir():
        return "auto"
    print(f"{run_dir}: an earlier attempt's files ({', '.join(stale)}) but no checkpoints/ to resume from: "
          "starting it again at step 0, the old files moved to previous-<time>/", file=sys.stderr, flush=True)  # fmt: skip
    return "fresh"


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
        "answer_metrics": module.answer_metrics,
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
